"""Run PriorDepth over a recorded sequence and write depth, matches, the trajectory, plots and metrics.

    python -m priordepth_core.infer --input <TUM folder | KITTI sequence/drive | rosbag2 | suite:NAME[:SPLIT[:SEED]]>
        --out DIR [--model driving|indoor|FILE] [--config PIPELINE.yaml] [--set FIELD=VALUE ...]
        [--backend openvino|onnxruntime|tensorrt|torch] [--scale-mode relative|camera_height] ...

Examples:

    python -m priordepth_core.infer --input suite:driving:test:900 --out runs/infer/driving_900 --backend onnxruntime
    python -m priordepth_core.infer --input rgbd_dataset_freiburg1_xyz --out runs/infer/fr1_xyz
    python -m priordepth_core.infer --input drive.mcap --image-topic /cam/image_raw --out runs/infer/drive
    python -m priordepth_core.infer --input suite:handheld --out runs/infer/handheld --model indoor

The pipeline's settings are the fields of ``priordepth_core.inference.PipelineConfig`` (the ROS node's parameters):
its defaults (with one thread per network), then a YAML file of fields (``--config``), then the shorthand flags
given (``--backend``, ``--threads``, ``--size`` ...), then ``--set FIELD=VALUE``, each later one winning. Unknown
fields and values out of range are refused before anything is read.

The output folder (layout in ``priordepth_core.infer.outputs``) is written under a temporary name and renamed when
complete: a failure, Ctrl-C or SIGTERM leaves nothing behind. It must not be, contain or lie inside the input, and
``--overwrite`` replaces only a folder this runner wrote (it holds a ``.priordepth-infer`` marker). With ground
truth, the metrics (depth abs_rel etc. under MonoDepth2's protocol with median scaling, ATE/RPE after Sim(3)
alignment) are printed and saved in ``metrics.json``.

Exit status: 0 done; 1 bad input (the message names it) or --out exists; 2 a pipeline setting refused (unknown
field or bad value), --out refused (overlaps the input, or --overwrite of a folder the runner did not write) or the
backend cannot run here; 130 Ctrl-C; 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..atomic_output import atomic_output, interrupt_on_sigterm, interruption_signal, is_marked_output
from ..config_schema import ConfigError, apply_overrides, merge, merge_file
from ..data import DatasetError
from ..inference import BackendUnavailableError, Pipeline, PipelineConfig
from .outputs import OUTPUT_MARKER, write_output_marker
from .runner import run_sequence, summary_table
from .sources import DEFAULT_CAMERA_INFO_TOPIC, DEFAULT_IMAGE_TOPIC, open_input

# Flags that set one PipelineConfig field each (argparse destination -> field); --size sets input_height and
# input_width, and --set reaches every field.
SHORTHAND_FIELDS = {"backend": "backend", "device": "device", "threads": "num_threads",
                    "concurrent_networks": "concurrent_networks", "scale_mode": "scale_mode",
                    "camera_height": "camera_height_m", "max_keypoints": "max_keypoints",
                    "keypoints": "keypoint_checkpoint"}
# The runner's starting point: the library's defaults, but one CPU thread per network (see --threads).
RUNNER_DEFAULTS = PipelineConfig(num_threads=1)


def parse_size(text: str) -> tuple[int, int]:
    """``"320x96"`` (WIDTHxHEIGHT) -> (height, width)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT like 320x96, got {text!r}") from None
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m priordepth_core.infer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="sequence folder, rosbag2 or suite:NAME[:SPLIT[:SEED]]")
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not exist unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output folder of this runner's (holding its .priordepth-infer "
                             "marker) when done")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", dest="checkpoint", metavar="NAME_OR_FILE",
                       help="a shipped model (driving, indoor) or a packed model file (default: driving)")
    model.add_argument("--checkpoint", help="packaged model or trainer checkpoint (= --model)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="YAML file of PipelineConfig fields, one per line (e.g. \"min_inliers: 30\")")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="set one PipelineConfig field, e.g. --set min_inliers=30 (repeatable; wins over the "
                             "other flags)")
    parser.add_argument("--keypoints", help="KeypointNet checkpoint for a checkpoint without one "
                                            "(= --set keypoint_checkpoint=FILE)")
    parser.add_argument("--backend", help="openvino, onnxruntime, tensorrt or torch (default openvino, INT8 where it "
                                          "passes parity; = --set backend=...)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default cpu; = --set device=...)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads per network (default 1; 0 = the libraries' default, all cores, which was "
                             "5-10x slower on a busy 2-core machine: benchmarks/pipeline.py; = --set num_threads=N)")
    parser.add_argument("--concurrent-networks", action="store_true", default=None,
                        help="run DepthNet and KeypointNet side by side (faster on small CPUs with --threads 1)")
    parser.add_argument("--size", type=parse_size, help="network input WIDTHxHEIGHT (default: checkpoint's)")
    parser.add_argument("--scale-mode", help="relative or camera_height (default relative; = --set scale_mode=...)")
    parser.add_argument("--camera-height", type=float,
                        help=f"camera height above the ground in metres for scale mode camera_height (default "
                             f"{PipelineConfig.camera_height_m}; = --set camera_height_m=...)")
    parser.add_argument("--max-keypoints", type=int,
                        help=f"keypoints kept per frame (default {PipelineConfig.max_keypoints})")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = all)")
    parser.add_argument("--every", type=int, default=1, help="use every N-th frame")
    parser.add_argument("--image-topic", default=DEFAULT_IMAGE_TOPIC, help="rosbag2: image topic")
    parser.add_argument("--camera-info-topic", default=DEFAULT_CAMERA_INFO_TOPIC, help="rosbag2: CameraInfo topic")
    parser.add_argument("--pose-topic", help="rosbag2: ground-truth pose topic (default /ground_truth/odometry "
                                             "when present)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def output_overlap(input_spec: str, out: Path) -> str | None:
    """How ``out`` overlaps the input (``"is"``, ``"contains"``, ``"is inside"``), after resolving symlinks; or None."""
    if input_spec.startswith("suite:"):  # a cached suite, never a path the user names
        return None
    source, target = Path(input_spec).resolve(), out.resolve()
    if target == source:
        return "is"
    if target in source.parents:
        return "contains"
    if source in target.parents:
        return "is inside"
    return None


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    """The runner's defaults, then ``--config``, then the shorthand flags given, then ``--set``; validated.

    Raises:
        ConfigError: an unreadable file, an unknown field (naming the nearest one) or a value out of range.
    """
    config = RUNNER_DEFAULTS if args.config is None else merge_file(RUNNER_DEFAULTS, args.config)
    flags = {field: getattr(args, dest) for dest, field in SHORTHAND_FIELDS.items() if getattr(args, dest) is not None}
    if args.size is not None:
        flags["input_height"], flags["input_width"] = args.size
    config = apply_overrides(merge(config, flags), args.overrides)
    config.validate()
    return config


def refuse_output(args: argparse.Namespace) -> tuple[int, str] | None:
    """(exit status, message) when ``--out`` must not be written, before anything is read or loaded."""
    overlap = output_overlap(args.input, args.out)
    if overlap is not None:
        return 2, (f"--out {args.out} {overlap} the input {args.input}; a run must never write into or replace its "
                   "input: choose an output folder outside it")
    exists = args.out.exists() or args.out.is_symlink()
    if exists and not args.overwrite:
        return 1, f"--out {args.out} already exists; remove it, choose another folder or pass --overwrite"
    if exists and not is_marked_output(args.out, OUTPUT_MARKER):
        return 2, (f"--out {args.out} exists and was not written by this runner (no {OUTPUT_MARKER} file in it), so "
                   "--overwrite does not replace it: remove it yourself or choose another --out")
    return None


def run(args: argparse.Namespace) -> int:
    refusal = refuse_output(args)
    if refusal is not None:
        status, message = refusal
        print(f"error: {message}", file=sys.stderr)
        return status
    if args.max_frames < 0 or args.every < 1:
        print("error: --max-frames must be >= 0 and --every >= 1", file=sys.stderr)
        return 1
    try:
        config = pipeline_config(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sequence = open_input(args.input, args.image_topic, args.camera_info_topic, args.pose_topic)
        sequence = sequence.limit(args.max_frames, args.every)
        if len(sequence) < 2:
            raise ValueError(f"--input {args.input}: needs at least two frames, got {len(sequence)}")
        pipeline = Pipeline(config, args.checkpoint)
        with atomic_output(args.out, replace_marked=OUTPUT_MARKER if args.overwrite else None) as folder:
            folder.mkdir()
            write_output_marker(folder)
            metrics = run_sequence(pipeline, sequence, folder, progress=not args.no_progress)
    except BackendUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (DatasetError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"\n{metrics['sequence']}: {metrics['frames']} frames -> {args.out}")
    print(summary_table(metrics))
    print(f"pictures: {args.out / 'overview.png'}, {args.out / 'trajectory.png'}, {args.out}/depth_color/, "
          f"{args.out}/matches/; metrics: {args.out / 'metrics.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("priordepth_core").setLevel(logging.INFO)  # our progress notes, not the exporter's chatter
    try:
        with interrupt_on_sigterm():
            return run(args)
    except KeyboardInterrupt as interruption:
        stopped_by = interruption_signal(interruption)
        print(f"\nerror: interrupted by {stopped_by.name}; the partial output was removed and {args.out} left as it "
              "was: run the command again", file=sys.stderr)
        return 128 + stopped_by


if __name__ == "__main__":
    sys.exit(main())
