"""Command line: ``python -m priordepth_core.data.synthetic --scene street --motion car --frames 100 --size 640x192
--seed 0 --format kitti --out DIR``, or ``--suite NAME`` to materialise a named benchmark suite."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .motion import MOTIONS
from .scenes import SCENES
from .sequence import SequenceSpec, make_sequence
from .suites import SUITES, ensure_suite
from .writers import FORMATS, write_sequence

DEFAULT_SIZE = {"street": "640x192", "room": "320x240"}


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (640, 480); argparse type."""
    parts = text.lower().split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT like 640x480, got {text!r}") from None
    if not (8 <= width <= 8192 and 8 <= height <= 8192):
        raise argparse.ArgumentTypeError(f"size must be between 8 and 8192 pixels a side, got {text!r}")
    return width, height


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m priordepth_core.data.synthetic", description=__doc__)
    parser.add_argument("--scene", choices=SCENES, help="scene kind")
    parser.add_argument("--motion", help=f"{' | '.join(MOTIONS)} | a trajectory file (KITTI poses, TUM, EuRoC csv)")
    parser.add_argument("--frames", type=int, default=100, help="number of frames (default 100)")
    parser.add_argument("--size", type=parse_size, help="WIDTHxHEIGHT (default 640x192 street, 320x240 room)")
    parser.add_argument("--seed", type=int, default=0, help="seed of path, layout and appearance (default 0)")
    parser.add_argument("--fps", type=float, help="frame rate (default: car 10, handheld/slow 30, replay <= 30)")
    parser.add_argument("--start", type=float, default=0.0, help="replay: seconds into the file to start at")
    parser.add_argument("--format", choices=FORMATS, default="tum", help="output layout (default tum)")
    parser.add_argument("--out", type=Path, help="output folder (TUM sequence or KITTI root); must not exist")
    parser.add_argument("--suite", choices=sorted(SUITES), help="materialise a named suite instead (cached)")
    parser.add_argument("--cache", type=Path, help="suite root folder (default $PRIORDEPTH_CACHE/suites or "
                                                   "~/.cache/priordepth/suites)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.suite:
        print(ensure_suite(args.suite, root=args.cache, progress=not args.no_progress))
        return 0
    missing = [flag for flag, value in (("--scene", args.scene), ("--motion", args.motion), ("--out", args.out))
               if value is None]
    if missing:
        parser.error(f"{', '.join(missing)} required (or use --suite NAME)")
    width, height = args.size or parse_size(DEFAULT_SIZE[args.scene])
    spec = SequenceSpec(args.scene, args.motion, args.frames, width, height, args.seed, args.fps, args.start)
    if args.out.exists():
        parser.error(f"--out {args.out} already exists; remove it or choose another folder")
    try:
        sequence = make_sequence(spec)
    except ValueError as error:  # bad spec or unreadable trajectory file
        parser.error(str(error))
    write_sequence(sequence, args.out, args.format, progress=not args.no_progress)
    print(args.out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
