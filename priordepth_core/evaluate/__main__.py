"""``python -m priordepth_core.evaluate depth|pose|trajectory|keypoints|curves ...``: metric tables and JSON."""

from __future__ import annotations

import argparse
import sys

from .curves import add_curves_parser, run_curves
from .depth_cli import add_depth_parser, run_depth
from .keypoint_cli import add_keypoints_parser, run_keypoints
from .pose_cli import add_pose_parser, run_pose
from .trajectory_cli import add_trajectory_parser, run_trajectory

EXAMPLES = """examples:
  python -m priordepth_core.evaluate depth --checkpoint runs/synthetic_driving/last.pt --json depth.json
  python -m priordepth_core.evaluate depth --checkpoint runs/x/last.pt --baseline constant
  python -m priordepth_core.evaluate pose --estimate est_tum.txt --reference groundtruth.txt --alignment sim3
  python -m priordepth_core.evaluate keypoints --checkpoint runs/keypoints/keypoint_net.pt
  python -m priordepth_core.evaluate trajectory --checkpoint runs/pose_sources/handheld/pnp/last.pt --out traj/
  python -m priordepth_core.evaluate trajectory --orb --config config/train/synthetic_handheld.yaml
  python -m priordepth_core.evaluate curves --run runs/synthetic_driving --out docs/curve.png
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m priordepth_core.evaluate", description=__doc__, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_depth_parser(sub)
    add_pose_parser(sub)
    add_keypoints_parser(sub)
    add_curves_parser(sub)
    add_trajectory_parser(sub)
    args = parser.parse_args(argv)
    handlers = {"depth": run_depth, "pose": run_pose, "keypoints": run_keypoints, "curves": run_curves,
                "trajectory": run_trajectory}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
