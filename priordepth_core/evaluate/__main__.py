"""``python -m priordepth_core.evaluate depth|pose|trajectory|keypoints|curves ...``: metric tables and JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES = """examples:
  python -m priordepth_core.evaluate depth --checkpoint runs/synthetic_driving/last.pt --json depth.json
  python -m priordepth_core.evaluate depth --checkpoint runs/x/last.pt --baseline constant
  python -m priordepth_core.evaluate pose --estimate est_tum.txt --reference groundtruth.txt --alignment sim3
  python -m priordepth_core.evaluate keypoints --checkpoint runs/keypoints/keypoint_net.pt
  python -m priordepth_core.evaluate trajectory --checkpoint runs/pose_sources/handheld/pnp/last.pt --out traj/
  python -m priordepth_core.evaluate trajectory --orb --config config/train/synthetic_handheld.yaml
  python -m priordepth_core.evaluate curves --run runs/synthetic_driving --out docs/curve.png
"""


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(target)


def print_table(rows: dict[str, dict[str, float]], keys: list[str]) -> None:
    """Markdown table: one row per entry, one column per metric key."""
    print("| run | " + " | ".join(keys) + " |")
    print("|" + "---|" * (len(keys) + 1))
    for name, metrics in rows.items():
        cells = [f"{metrics[k]:.4f}" if isinstance(metrics.get(k), float) else str(metrics.get(k, "")) for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m priordepth_core.evaluate", description=__doc__, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    from .depth_cli import add_depth_parser, run_depth
    from .pose_cli import add_pose_parser, run_pose

    add_depth_parser(sub)
    add_pose_parser(sub)
    try:
        from .keypoint_eval import add_keypoints_parser, run_keypoints
    except ImportError:  # the keypoint evaluation module is optional at import time
        run_keypoints = None
    else:
        add_keypoints_parser(sub)
    from .curves import add_curves_parser, run_curves

    add_curves_parser(sub)
    from .trajectory_cli import add_trajectory_parser, run_trajectory

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
