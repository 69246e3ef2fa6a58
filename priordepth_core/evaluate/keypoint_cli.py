"""``evaluate keypoints``: ORB, SIFT and a trained KeypointNet on graf1 -> graf3 and on random homography warps."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..inference.model_file import INFERENCE_MODEL_FORMAT, load_keypoint_net_file
from ..train.checkpoint import load_checkpoint
from ..train.keypoints import load_keypoint_net, skimage_photo
from .keypoint_eval import (
    DEFAULT_GRAF_DIR,
    GRAF_SOURCE,
    KeypointDetector,
    KeypointNetDetector,
    OrbDetector,
    SiftDetector,
    evaluate_pair,
    evaluate_synthetic_pairs,
    load_graf_pair,
    read_image_rgb,
)
from .report import print_table, write_json

METHODS = ("orb", "sift", "ours")
# scikit-image photos held out of KeypointNet training (priordepth_core.train.keypoints.HELD_OUT_IMAGES) plus graf1.
DEFAULT_SYNTHETIC_IMAGES = ("coffee", "rocket", "graf1")
TABLE_KEYS = ["repeatability", "localization_error", "correctness_1", "correctness_3", "correctness_5",
              "matching_score", "mean_corner_error", "num_detected1", "num_matches", "num_inliers", "detect_ms"]


def load_keypoint_detector(path: str | Path, top_k: int = 1000, nms_radius: int = 0,
                           device: str | torch.device = "cpu") -> KeypointNetDetector:
    """The KeypointNet of a ``python -m priordepth_core.train.keypoints`` checkpoint, or of a packed inference model
    (e.g. ``priordepth_core/assets/priordepth_indoor.pt``), as a detector.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not a KeypointNet checkpoint, or its weights do not fit its config.
    """
    state = load_checkpoint(path, map_location="cpu")
    if isinstance(state, dict) and state.get("format") == INFERENCE_MODEL_FORMAT:
        net = load_keypoint_net_file(path)[0].to(device)
    else:
        net, _ = load_keypoint_net(path, device)
    return KeypointNetDetector(net, top_k=top_k, nms_radius=nms_radius, device=device)


def build_detector(method: str, checkpoint: str | Path | None = None, num_features: int = 1000,
                   nms_radius: int = 0, device: str = "cpu") -> KeypointDetector:
    """``"orb"``, ``"sift"`` (``num_features`` each) or ``"ours"`` (KeypointNet from ``checkpoint``)."""
    if method == "orb":
        return OrbDetector(num_features)
    if method == "sift":
        return SiftDetector(num_features)
    if method == "ours":
        if checkpoint is None:
            raise ValueError("method 'ours' needs a KeypointNet checkpoint (--checkpoint)")
        return load_keypoint_detector(checkpoint, top_k=num_features, nms_radius=nms_radius, device=device)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")



def synthetic_images(names: Sequence[str], graf_dir: str | Path) -> list[np.ndarray]:
    """Images by name: ``graf1``/``graf3`` from ``graf_dir``, a path to a file, or a scikit-image photo name."""
    images = []
    for name in names:
        if name in ("graf1", "graf3"):
            images.append(read_image_rgb(Path(graf_dir) / f"{name}.png"))
        elif Path(name).suffix:
            images.append(read_image_rgb(name))
        else:
            images.append(skimage_photo(name))
    return images


def add_keypoints_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "keypoints", help="ORB / SIFT / KeypointNet on graf1->graf3 and synthetic homography pairs",
        description="Keypoint detection and description under known homographies (KP2D protocol): the real graf1 -> "
                    "graf3 pair and random warps of held-out images. Prints markdown tables.",
        epilog="example:\n  python -m priordepth_core.evaluate keypoints --checkpoint runs/keypoints/keypoint_net.pt "
               "--json runs/keypoints/eval.json", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="KeypointNet checkpoint or packed inference model (needed for method "
                        "'ours')")
    parser.add_argument("--graf", default=str(DEFAULT_GRAF_DIR), help="folder with graf1.png, graf3.png, H1to3p.xml")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--top-k", type=int, default=1000, help="keypoints per image (correctness, matching score)")
    parser.add_argument("--repeatability-top-k", type=int, default=300, help="keypoints per image for repeatability")
    parser.add_argument("--nms-radius", type=int, default=0, help="KeypointNet NMS radius in cells (0 = none)")
    parser.add_argument("--synthetic-pairs", type=int, default=12, help="random homography pairs (0 = skip)")
    parser.add_argument("--synthetic-images", nargs="+", default=list(DEFAULT_SYNTHETIC_IMAGES),
                        help="held-out images for the synthetic pairs: scikit-image names, graf1, or files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic homographies")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write all metrics here")


def run_keypoints(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if "ours" in args.methods and not args.checkpoint:
        raise ValueError("method 'ours' needs --checkpoint (or leave it out of --methods)")
    if args.top_k < 1 or args.repeatability_top_k < 1 or args.synthetic_pairs < 0:
        raise ValueError("--top-k and --repeatability-top-k must be positive, --synthetic-pairs non-negative")
    detectors = {m: build_detector(m, args.checkpoint, args.top_k, args.nms_radius, args.device) for m in args.methods}
    image1, image3, H_1to3 = load_graf_pair(args.graf)
    report: dict[str, Any] = {"checkpoint": args.checkpoint, "graf": str(args.graf), "graf_source": GRAF_SOURCE,
                              "top_k": args.top_k, "repeatability_top_k": args.repeatability_top_k,
                              "nms_radius": args.nms_radius}
    graf_rows = {name: evaluate_pair(d, image1, image3, H_1to3, args.top_k, args.repeatability_top_k)
                 for name, d in detectors.items()}
    print(f"graf1 -> graf3 ({image1.shape[1]}x{image1.shape[0]}), {GRAF_SOURCE}")
    print_table(graf_rows, TABLE_KEYS)
    report["graf1_to_graf3"] = graf_rows
    if args.synthetic_pairs:
        images = synthetic_images(args.synthetic_images, args.graf)
        synthetic_rows = {name: evaluate_synthetic_pairs(d, images, args.synthetic_pairs, args.seed, args.top_k,
                                                         args.repeatability_top_k) for name, d in detectors.items()}
        print(f"\nsynthetic: {args.synthetic_pairs} random homography warps of {', '.join(args.synthetic_images)} "
              f"(seed {args.seed}), means over pairs")
        print_table(synthetic_rows, [*TABLE_KEYS, "num_failed_homographies"])
        report["synthetic"] = {"images": list(args.synthetic_images), "seed": args.seed, "metrics": synthetic_rows}
    write_json(args.json, report)
    return 0
