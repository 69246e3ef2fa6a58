"""``python -m rosbag_tools <command>``: datasets to rosbag2, rosbag2 to training frames, bag summaries and replay.

Commands: kitti2bag, tum2bag, synth2bag, bag2frames, info, play (``<command> --help`` shows options and an example).
Console scripts: ``priordepth-rosbag <command>``, and ``priordepth-kitti2bag``, ``priordepth-tum2bag``,
``priordepth-synth2bag``, ``priordepth-bag2frames``, ``priordepth-bag-info``, ``priordepth-bag-play``.

Errors in the input (not a dataset folder, missing calibration, unreadable bag, missing topic, unsupported encoding)
print one line naming the file or topic and exit with status 1; outputs are written under a temporary name and
renamed when complete, so a failed or interrupted conversion (Ctrl-C, SIGTERM: exit status 130 / 143) leaves
nothing behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from priordepth_core.atomic_output import check_new_output, interrupt_on_sigterm, interruption_signal
from priordepth_core.data import DatasetError

from .bag_writer import STORAGES, FrameNames, TopicNames, write_bag

PROG = "python -m rosbag_tools"
DEFAULT_TOPICS = TopicNames()
DEFAULT_FRAMES = FrameNames()

EXAMPLES = {
    "kitti2bag": """examples:
  # KITTI raw drive (left colour camera, velodyne depth, /tf_static camera -> velodyne -> imu)
  python -m rosbag_tools kitti2bag kitti_raw/2011_09_26/2011_09_26_drive_0001_sync -o drive_0001
  # KITTI odometry sequence with ground-truth poses, sqlite3 storage
  python -m rosbag_tools kitti2bag kitti_odometry/sequences/00 -o odometry_00 --storage sqlite3""",
    "tum2bag": """example:
  python -m rosbag_tools tum2bag rgbd_dataset_freiburg1_xyz -o fr1_xyz""",
    "synth2bag": """examples:
  # one test sequence of a named suite (generated and cached on first use)
  python -m rosbag_tools synth2bag --suite handheld --split test --seed 910 -o handheld_910
  # a sequence rendered on the fly (nothing cached)
  python -m rosbag_tools synth2bag --scene room --motion handheld --frames 60 --size 320x240 --seed 3 -o room3
  # the same through a barrel-distorting lens (plumb_bob k1 k2 p1 p2 k3 in CameraInfo)
  python -m rosbag_tools synth2bag --scene room --motion handheld --frames 60 --seed 3 -o room3_lens \\
      --distortion -0.25 0.07 0.001 -0.0005 0
  # a synthetic sequence folder in TUM layout
  python -m rosbag_tools synth2bag --sequence ~/.cache/priordepth/suites/handheld-v1/test/seed_0910 -o h910""",
    "bag2frames": """examples:
  # a user's recording: compressed colour camera at 10 Hz, resized to 640x480
  python -m rosbag_tools bag2frames robot.mcap -o robot_frames --image-topic /cam/image_raw/compressed \\
      --max-rate 10 --size 640x480
  # a converted bag back to a TUM-layout sequence with its ground truth
  python -m rosbag_tools bag2frames fr1_xyz -o fr1_xyz_frames --pose-topic /ground_truth/odometry \\
      --depth-topic /ground_truth/depth""",
    "info": """example:
  python -m rosbag_tools info fr1_xyz""",
    "play": """examples:
  python -m rosbag_tools play fr1_xyz --rate 0.5 --loop
  # start 10 s in, once a subscriber listens on the image topic, publishing /clock for use_sim_time nodes
  python -m rosbag_tools play fr1_xyz --start-offset 10 --wait-for /camera/image --clock""",
}


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (640, 480); argparse type."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT like 640x480, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _subparser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_bag_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", type=Path, required=True, help="rosbag2 folder to create (must not exist)")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap", help="storage plugin (default mcap)")
    parser.add_argument("--compress", action="store_true", help="mcap: zstd-compressed chunks (smaller, slower)")
    parser.add_argument("--time-offset", type=float, default=0.0,
                        help="seconds added to every stamp (default 0: the dataset's own times)")
    topics = parser.add_argument_group("topics")
    for field, flag, what in (("image", "--image-topic", "sensor_msgs/Image rgb8"),
                              ("camera_info", "--camera-info-topic", "sensor_msgs/CameraInfo"),
                              ("depth", "--depth-topic", "ground-truth depth, 32FC1 metres"),
                              ("odometry", "--odometry-topic", "ground-truth nav_msgs/Odometry"),
                              ("tf", "--tf-topic", "ground-truth pose as tf2_msgs/TFMessage"),
                              ("tf_static", "--tf-static-topic", "fixed calibration transforms")):
        default = getattr(DEFAULT_TOPICS, field)
        topics.add_argument(flag, dest=f"topic_{field}", default=default, metavar="TOPIC",
                            help=f"{what} (default {default})")
    frames = parser.add_argument_group("frame ids")
    for field, flag, what in (("camera", "--camera-frame", "the camera's optical frame (image headers)"),
                              ("world", "--world-frame", "parent frame of the ground-truth pose"),
                              ("ground_truth", "--gt-frame", "the ground-truth camera frame"),
                              ("velodyne", "--velodyne-frame", "KITTI velodyne"),
                              ("imu", "--imu-frame", "KITTI raw IMU")):
        default = getattr(DEFAULT_FRAMES, field)
        frames.add_argument(flag, dest=f"frame_{field}", default=default, metavar="FRAME",
                            help=f"{what} (default {default})")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    kitti = _subparser(subparsers, "kitti2bag", "KITTI raw drive or KITTI odometry sequence -> rosbag2")
    kitti.add_argument("path", type=Path, help="raw: <root>/<date>/<date>_drive_XXXX_sync; odometry: "
                                               "<root>/sequences/<XX> (poses from <root>/poses/<XX>.txt)")
    kitti.add_argument("--camera", type=int, default=2, choices=(0, 1, 2, 3),
                       help="rectified camera: 2 left colour (default), 3 right colour; odometry also 0/1 grey")
    kitti.add_argument("--no-depth", action="store_true", help="raw: skip the velodyne ground-truth depth")
    kitti.add_argument("--image-extension", default=".png", help="image file extension (default .png)")
    _add_bag_output_options(kitti)

    tum = _subparser(subparsers, "tum2bag", "TUM RGB-D sequence -> rosbag2")
    tum.add_argument("path", type=Path, help="sequence folder (rgb.txt, depth.txt, groundtruth.txt, rgb/, depth/)")
    tum.add_argument("--max-time-difference", type=_positive_float, default=0.02,
                     help="rgb/depth/ground-truth association tolerance in seconds (default 0.02, as TUM's tools)")
    tum.add_argument("--no-depth", action="store_true", help="skip depth (keeps rgb frames without a depth partner)")
    _add_bag_output_options(tum)

    synth = _subparser(subparsers, "synth2bag", "synthetic sequence (exact depth, poses, intrinsics) -> rosbag2")
    source = synth.add_mutually_exclusive_group(required=True)
    source.add_argument("--suite", help="named suite: driving, handheld or indoor-slow (cached)")
    source.add_argument("--sequence", type=Path, help="a synthetic sequence folder in TUM layout")
    source.add_argument("--scene", help="render on the fly: street or room (with --motion, --frames, --size)")
    synth.add_argument("--split", default="test", choices=("train", "test"), help="suite split (default test)")
    synth.add_argument("--seed", type=int, help="suite: one of the split's seeds (default its first); "
                                                "--scene: path/layout seed (default 0)")
    synth.add_argument("--cache", type=Path, help="folder holding suites (default $PRIORDEPTH_CACHE/suites or "
                                                  "~/.cache/priordepth/suites)")
    synth.add_argument("--motion", default=None, help="--scene: car, handheld, slow or a trajectory file")
    synth.add_argument("--frames", type=_positive_int, default=100, help="--scene: number of frames (default 100)")
    synth.add_argument("--size", type=parse_size, help="--scene: WIDTHxHEIGHT (default 640x192 street, 320x240 room)")
    synth.add_argument("--fps", type=_positive_float, help="--scene: frame rate (default: the motion's)")
    synth.add_argument("--distortion", type=float, nargs=5, metavar=("K1", "K2", "P1", "P2", "K3"),
                       help="record the images through a plumb_bob lens with these coefficients (CameraInfo carries "
                            "them; readers that rectify get the pinhole images back)")
    _add_bag_output_options(synth)

    frames = _subparser(subparsers, "bag2frames", "rosbag2 -> training sequence in TUM layout (+ intrinsics.txt)")
    frames.add_argument("bag", type=Path, help="rosbag2 folder, .mcap or .db3 file")
    frames.add_argument("-o", "--out", type=Path, required=True, help="sequence folder to create (must not exist)")
    frames.add_argument("--image-topic", help="Image or CompressedImage topic (default: the only non-depth one)")
    frames.add_argument("--camera-info-topic", help="its CameraInfo (default: <image namespace>/camera_info)")
    frames.add_argument("--pose-topic", help="PoseStamped or Odometry of the camera -> groundtruth.txt "
                                             f"(e.g. {DEFAULT_TOPICS.odometry})")
    frames.add_argument("--depth-topic", help="depth Image (32FC1 m, 16UC1 mm) registered to the image -> depth/ "
                                              f"(e.g. {DEFAULT_TOPICS.depth})")
    frames.add_argument("--depth-exact", action="store_true", help="also write depth_exact/*.npy float metres")
    frames.add_argument("--every", type=_positive_int, default=1, help="keep every n-th image (default 1)")
    frames.add_argument("--max-rate", type=_positive_float, help="then keep at most this many frames per second")
    frames.add_argument("--size", type=parse_size, help="resize to WIDTHxHEIGHT (K scaled accordingly)")
    frames.add_argument("--max-time-difference", type=_positive_float, default=0.02,
                        help="pose/depth association tolerance in seconds (default 0.02)")
    frames.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    info = _subparser(subparsers, "info", "topics, types, counts, rates, duration, image sizes and encodings")
    info.add_argument("bag", type=Path, help="rosbag2 folder, .mcap or .db3 file")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")

    play = _subparser(subparsers, "play", "replay a rosbag2 into live ROS 2 topics (rclpy)")
    play.add_argument("bag", type=Path, help="rosbag2 folder, .mcap or .db3 file")
    play.add_argument("--rate", type=_positive_float, default=1.0, help="speed factor (default 1)")
    play.add_argument("--loop", action="store_true", help="start over at the end until interrupted")
    play.add_argument("--start-offset", type=float, default=0.0, help="seconds into the bag to start at")
    play.add_argument("--topics", nargs="+", help="play only these topics")
    play.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="publish a bag topic under a new name")
    play.add_argument("--wait-for", nargs="+", default=[], metavar="TOPIC",
                      help="wait until these (published) topics have a subscriber before playing")
    play.add_argument("--wait-timeout", type=float, default=30.0, help="seconds to wait for them (default 30)")
    play.add_argument("--delay", type=float, default=0.0, help="seconds to sleep before the first message")
    play.add_argument("--clock", action="store_true", help="also publish /clock with the bag time")
    play.add_argument("--qos-depth", type=_positive_int, default=100, help="publisher history depth (default 100)")
    return parser


def _names(args: argparse.Namespace) -> tuple[TopicNames, FrameNames]:
    topics = TopicNames(**{f: getattr(args, f"topic_{f}") for f in TopicNames.__dataclass_fields__})
    frames = FrameNames(**{f: getattr(args, f"frame_{f}") for f in FrameNames.__dataclass_fields__})
    return topics, frames


def _write(args: argparse.Namespace, sequence) -> None:
    topics, frames = _names(args)
    summary = write_bag(sequence, args.out, storage=args.storage, topics=topics, frames=frames,
                        time_offset=args.time_offset, compress=args.compress, progress=not args.no_progress)
    counts = ", ".join(f"{topic} {count}" for topic, count in summary.counts.items())
    print(f"{summary.path}: {summary.frames} frames ({summary.storage}; {counts})")


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from . import sources

    if args.command.endswith("2bag"):
        check_new_output(args.out)  # before reading or rendering anything
    if args.command == "kitti2bag":
        _write(args, sources.kitti_sequence(args.path, args.camera, False if args.no_depth else None,
                                            args.image_extension))
    elif args.command == "tum2bag":
        _write(args, sources.tum_sequence(args.path, args.max_time_difference, False if args.no_depth else None))
    elif args.command == "synth2bag":
        if args.suite:
            sequence = sources.synthetic_suite_sequence(args.suite, args.split, args.seed, args.cache,
                                                        progress=not args.no_progress)
        elif args.sequence:
            sequence = sources.tum_sequence(args.sequence)
        else:
            if args.motion is None:
                parser.error("synth2bag --scene needs --motion (car, handheld, slow or a trajectory file)")
            width, height = args.size or {"street": (640, 192)}.get(args.scene, (320, 240))
            sequence = sources.synthetic_rendered_sequence(args.scene, args.motion, args.frames, width, height,
                                                           args.seed or 0, args.fps)
        if args.distortion:
            sequence = sources.with_lens(sequence, tuple(args.distortion))
        _write(args, sequence)
    elif args.command == "bag2frames":
        from .bag_to_frames import extract_frames

        summary = extract_frames(args.bag, args.out, args.image_topic, args.camera_info_topic, args.pose_topic,
                                 args.depth_topic, args.every, args.max_rate, args.size, args.max_time_difference,
                                 args.depth_exact, progress=not args.no_progress)
        extras = [name for name, present in (("depth", summary.with_depth), ("poses", summary.with_poses)) if present]
        print(f"{summary.path}: {summary.frames} frames {summary.size_hw[1]}x{summary.size_hw[0]}"
              + (f" with {' and '.join(extras)}" if extras else ""))
    elif args.command == "info":
        from .bag_info import bag_info, format_info, info_json

        info = bag_info(args.bag)
        print(info_json(info) if args.json else format_info(info))
    elif args.command == "play":
        from .play import parse_remaps, play

        summary = play(args.bag, rate=args.rate, loop=args.loop, start_offset=args.start_offset, topics=args.topics,
                       remap=parse_remaps(args.remap), wait_for=args.wait_for, wait_timeout=args.wait_timeout,
                       delay=args.delay, clock=args.clock, qos_depth=args.qos_depth)
        print(f"published {sum(summary.published.values())} messages in {summary.loops} pass(es): "
              + ", ".join(f"{topic} {count}" for topic, count in sorted(summary.published.items())))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .play import PlayError

    try:
        with interrupt_on_sigterm():
            return _run(parser, args)
    except (DatasetError, PlayError, ValueError, OSError) as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interruption:
        stopped_by = interruption_signal(interruption)
        written = f"; the partial {args.out} was removed, run the command again" if hasattr(args, "out") else ""
        print(f"{PROG} {args.command}: interrupted by {stopped_by.name}{written}", file=sys.stderr)
        return 128 + stopped_by


def _command(name: str):
    def entry() -> int:
        return main([name, *sys.argv[1:]])

    entry.__name__ = name.replace("-", "_")
    entry.__doc__ = f"Console script: ``{PROG} {name}``."
    return entry


kitti2bag = _command("kitti2bag")
tum2bag = _command("tum2bag")
synth2bag = _command("synth2bag")
bag2frames = _command("bag2frames")
info = _command("info")
play = _command("play")


if __name__ == "__main__":
    sys.exit(main())
