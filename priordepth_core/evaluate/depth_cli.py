"""``evaluate depth``: a trained checkpoint (or a baseline) on a dataset split, MonoDepth2 protocol."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ..config_schema import apply_overrides
from ..data.registry import build_split
from ..inference.model_file import EXPECTED_MODEL_FILE, build_depth_net, load_depth_net
from ..train.config import ExperimentConfig, config_from_dict
from .depth_eval import predict_depths
from .depth_metrics import DEPTH_METRIC_NAMES, aggregate_depth_metrics, compute_depth_metrics
from .report import print_table, write_json

BASELINES = ("constant", "untrained")


def add_depth_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("depth", help="depth metrics of a checkpoint or baseline on a test split")
    parser.add_argument("--checkpoint", required=True,
                        help=f"{EXPECTED_MODEL_FILE}; the training config it records names the data")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override the checkpoint's config, e.g. --set data.suite=handheld")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--baseline", choices=BASELINES,
                        help="score a baseline instead: a constant depth, or the same network untrained")
    parser.add_argument("--min-depth", type=float, default=1e-3)
    parser.add_argument("--max-depth", type=float, default=80.0)
    parser.add_argument("--crop", choices=["garg", "eigen", "none"], default="none")
    parser.add_argument("--no-median-scaling", action="store_true", help="metric models: skip median scaling")
    parser.add_argument("--max-samples", type=int, default=0, help="evaluate at most this many samples (0 = all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the metrics here")


def load_depth_model(checkpoint: str, overrides: list[str], device: str, untrained: bool = False):
    """(config, DepthNet) from a packed model or a trainer checkpoint; ``untrained`` keeps the seeded initial weights.

    The config is the training config the file records (a packed model made from a trainer checkpoint keeps it in
    its provenance), otherwise the defaults at the model's input size; ``overrides`` apply on top (e.g. the data).
    """
    depth_net, depth_config, input_size, model_file = load_depth_net(checkpoint)
    training = model_file.training_config
    config = config_from_dict(training) if training is not None else ExperimentConfig()
    config.data.height, config.data.width = input_size
    config = apply_overrides(config, overrides)
    config.validate()
    if untrained:
        torch.manual_seed(config.run.seed)
        depth_net = build_depth_net(depth_config)
    return config, depth_net.to(device).eval()


def run_depth(args: argparse.Namespace) -> int:
    config, depth_net = load_depth_model(args.checkpoint, args.overrides, args.device,
                                         untrained=args.baseline == "untrained")
    dataset = build_split(config.data, args.split)
    crop = None if args.crop == "none" else args.crop
    per_image = []
    max_samples = args.max_samples or None
    for _, pred, gt in predict_depths(depth_net, dataset, args.device, max_samples=max_samples):
        if not ((gt > args.min_depth) & (gt < args.max_depth)).any():
            continue
        if args.baseline == "constant":
            pred = np.ones_like(pred)  # median scaling turns it into the per-image median of the ground truth
        per_image.append(compute_depth_metrics(gt, pred, min_depth=args.min_depth, max_depth=args.max_depth,
                                               crop=crop, median_scaling=not args.no_median_scaling))
    if not per_image:
        raise ValueError("no sample with ground-truth depth inside the evaluation range")
    metrics = aggregate_depth_metrics(per_image)
    name = args.baseline or "model"
    print(f"depth on {config.data.kind}:{config.data.suite if config.data.kind == 'suite' else config.data.path} "
          f"{args.split} split, {metrics['num_images']} images, range {args.min_depth}-{args.max_depth} m, "
          f"{'median-scaled' if not args.no_median_scaling else 'metric'}")
    print_table({name: metrics}, list(DEPTH_METRIC_NAMES))
    write_json(args.json, {"checkpoint": args.checkpoint, "baseline": args.baseline, "split": args.split,
                            "median_scaling": not args.no_median_scaling, "metrics": metrics})
    return 0
