"""Package a trained model into the small fp16 inference file the pipeline loads (and the package ships).

    python -m priordepth_core.inference.pack --checkpoint runs/experiment/driving/priordepth_v3/last.pt \\
        --keypoints priordepth_core/assets/priordepth_indoor.pt \\
        --metrics docs/results/experiment/driving_priordepth_v3_depth_step999.json \\
        --out priordepth_core/assets/priordepth_driving.pt

``--checkpoint`` is a trainer checkpoint; a joint PriorDepth checkpoint (pose source pnp/essential, or a keypoint
loss) carries its own KeypointNet, used unless ``--keypoints`` names another; a PoseNet checkpoint needs
``--keypoints``. ``--metrics`` (JSON) and ``--note`` are recorded in the file's provenance with the source files'
sha256. The file is written atomically; on any error nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .model_file import MAX_PACKAGED_BYTES, load_inference_model, pack_inference_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m priordepth_core.inference.pack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="trainer checkpoint (or a packaged model)")
    parser.add_argument("--keypoints", type=Path, help="KeypointNet checkpoint (needed for PoseNet runs)")
    parser.add_argument("--metrics", type=Path, help="JSON file of evaluation results to record")
    parser.add_argument("--note", default="", help="free text to record (e.g. the training command)")
    parser.add_argument("--out", required=True, type=Path, help="output file (.pt)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        metrics = None
        if args.metrics is not None:
            if not args.metrics.is_file():
                raise FileNotFoundError(f"--metrics {args.metrics} does not exist")
            try:
                metrics = json.loads(args.metrics.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"--metrics {args.metrics} is not JSON: {exc}") from exc
        provenance = pack_inference_model(args.checkpoint, args.out, args.keypoints, metrics, args.note)
        model = load_inference_model(args.out)  # read back: the file must load as the pipeline will load it
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 2**20:.2f} MiB of at most {MAX_PACKAGED_BYTES / 2**20:.0f}); "
          f"input {model.input_size[1]}x{model.input_size[0]}, depth {model.depth_config}, "
          f"keypoints {model.keypoint_config}")
    print(f"pose source {provenance.get('pose_source', '?')}, keypoints from {provenance.get('keypoint_source', '?')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
