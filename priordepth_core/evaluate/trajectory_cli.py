"""``evaluate trajectory``: ATE/RPE of a trained model's pose source (or the ORB baseline) on a test split."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config_schema import apply_overrides
from ..data.registry import build_split
from ..data.synthetic.suites import ensure_suite, load_manifest
from ..data.trajectory_io import write_tum_trajectory
from ..inference.model_file import TRAINER_CHECKPOINT, read_model_file
from ..train.config import config_from_dict, load_config
from ..train.model import DepthPoseModel
from .report import print_table, write_json
from .trajectory_eval import evaluate_trajectories, mean_metrics, orb_relative_poses, trained_relative_poses


def add_trajectory_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("trajectory", help="frame-to-frame odometry of a checkpoint or the ORB baseline")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="trainer checkpoint (runs/<name>/last.pt): its config names the model, "
                                             "pose source and data (a packed model has no pose source)")
    source.add_argument("--orb", action="store_true",
                        help="classical baseline: ORB + OpenCV 5-point RANSAC + recoverPose, scale from GT")
    parser.add_argument("--config", help="with --orb: the experiment YAML naming the data (e.g. a suite)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override the config, e.g. --set data.suite=handheld")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--native-resolution", action="store_true",
                        help="read images at their native size (default for --orb; networks use their own size)")
    parser.add_argument("--out", help="write <sequence>_estimate.txt / _reference.txt (TUM format) here")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the metrics here")


def _load_model(checkpoint: str, overrides: list[str], device: str):
    model_file = read_model_file(checkpoint)
    if model_file.kind != TRAINER_CHECKPOINT:
        raise ValueError(f"{checkpoint} is a {model_file.kind}; evaluate trajectory needs a trainer checkpoint "
                         f"(runs/<name>/last.pt), which names the trained pose source and holds its networks "
                         f"(a packed model runs with: python -m priordepth_core.infer --checkpoint {checkpoint})")
    state = model_file.state
    config = apply_overrides(config_from_dict(state["config"]), overrides)
    # The checkpoint holds the trained KeypointNet: no init file is read, and freezing only matters in training.
    config.model.keypoint_init = ""
    config.model.keypoint_frozen = False
    config.model.pretrained_path = ""
    config.validate()
    model = DepthPoseModel(config)
    model.load_state_dict(state["model"])
    return config, model.to(device).eval()


def run_trajectory(args: argparse.Namespace) -> int:
    if args.orb:
        config = load_config(args.config, args.overrides)
        relative_poses = orb_relative_poses
        name = "orb"
    else:
        config, model = _load_model(args.checkpoint, args.overrides, args.device)
        relative_poses = lambda samples: trained_relative_poses(model, samples, args.device)  # noqa: E731
        name = f"{model.active_pose_source(10**9)}"
    config.data.context_offsets = [-1]
    config.data.min_context_parallax_px = 0.0  # frame to frame: no parallax-chosen context frames
    if args.orb or args.native_resolution:
        config.data.height, config.data.width = _native_size(config)
    dataset = build_split(config.data, args.split)
    results = evaluate_trajectories(dataset, relative_poses)

    rows = {f"{name}:{Path(r.name).name}": r.metrics for r in results}
    summary = mean_metrics(results)
    rows[f"{name}:mean"] = summary
    print(f"trajectory on {config.data.kind}:{config.data.suite if config.data.kind == 'suite' else config.data.path} "
          f"{args.split} split, {len(results)} sequences, ATE after Sim(3) alignment")
    print_table(rows, list(summary))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for r in results:
            stem = Path(r.name).name
            write_tum_trajectory(out / f"{stem}_estimate.txt", r.stamps, r.T_world_est)
            write_tum_trajectory(out / f"{stem}_reference.txt", r.stamps, r.T_world_ref)
    write_json(args.json, {"checkpoint": args.checkpoint, "method": name, "split": args.split, "mean": summary,
                            "sequences": {Path(r.name).name: {**r.metrics, "failed_pairs": r.failed_pairs,
                                                              "num_pairs": len(r.stamps) - 1} for r in results}})
    return 0


def _native_size(config) -> tuple[int, int]:
    """The suite's rendered size (ORB works on full-resolution frames)."""
    if config.data.kind != "suite":
        return config.data.height, config.data.width
    manifest = load_manifest(Path(ensure_suite(config.data.suite)))
    return int(manifest["height"]), int(manifest["width"])



