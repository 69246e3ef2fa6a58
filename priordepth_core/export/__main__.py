"""Export the inference networks and check the result against PyTorch.

    python -m priordepth_core.export --checkpoint C --format onnx|torchscript|tensorrt --out F \\
        [--height H --width W] [--dynamic] [--part all|depth|keypoints] [--precision fp32|fp16]

``--checkpoint`` is a packaged inference model (default: the one shipped in the package) or a trainer checkpoint
(``--keypoints`` adds a KeypointNet to a PoseNet run). The graph maps a (1, 3, H, W) float image in [0, 1] to
``depth`` (1, 1, H, W) and/or ``score`` (1, 1, H/8, W/8), ``coord`` (1, 2, H/8, W/8), ``desc`` (1, D, H/4, W/4).
The size defaults to the checkpoint's training size; ``--dynamic`` (ONNX) makes height and width symbolic (any
multiples of 32). After export the written file is loaded back and run on a fixed image-like input, and the max
absolute and relative error of every output against PyTorch is printed (also at a second size when dynamic).
TensorRT needs a CUDA GPU and torch-tensorrt; without them the command says so and exits with status 2.

Exit status: 0 written and within tolerance; 1 bad input or parity failure; 2 runtime unavailable. Nothing is left
at ``--out`` unless the export succeeded and passed the check.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

from ..inference.backends import BackendUnavailableError
from ..inference.config import MIN_INPUT_SIZE
from ..inference.model_file import default_checkpoint_path, load_inference_model
from ..inference.networks import (
    ALL_OUTPUTS,
    DEPTH_OUTPUTS,
    KEYPOINT_OUTPUTS,
    DepthGraph,
    KeypointGraph,
    PriorDepthGraph,
)
from ..models.depth_net import INPUT_MULTIPLE
from .formats import FORMATS, export_onnx, export_tensorrt, export_torchscript
from .parity import TOLERANCE, compare_outputs, format_rows, parity_image

PARTS = ("all", "depth", "keypoints")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m priordepth_core.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="packaged model or trainer checkpoint (default: the shipped model)")
    parser.add_argument("--keypoints", type=Path, help="KeypointNet checkpoint for a checkpoint without one")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, type=Path, help="output file")
    parser.add_argument("--height", type=int, default=0, help="input height (multiple of 32; default: trained)")
    parser.add_argument("--width", type=int, default=0, help="input width (multiple of 32; default: trained)")
    parser.add_argument("--dynamic", action="store_true", help="ONNX: symbolic height and width")
    parser.add_argument("--part", choices=PARTS, default="all", help="which network(s) (default both)")
    parser.add_argument("--precision", choices=sorted(TOLERANCE), default="fp32", help="TensorRT precision")
    parser.add_argument("--device", default="cuda", help="TensorRT device (default cuda)")
    return parser


def _graph(model, part: str):
    if part == "depth":
        return DepthGraph(model.depth_net), DEPTH_OUTPUTS
    if part == "keypoints":
        return KeypointGraph(model.keypoint_net), KEYPOINT_OUTPUTS
    return PriorDepthGraph(model.depth_net, model.keypoint_net), ALL_OUTPUTS


def _reference(graph, image: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        outputs = graph(image)
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def _check_args(args: argparse.Namespace) -> None:
    for name in ("height", "width"):
        value = getattr(args, name)
        if value < 0 or value % INPUT_MULTIPLE or 0 < value < MIN_INPUT_SIZE:
            raise ValueError(f"--{name} must be a multiple of {INPUT_MULTIPLE} of at least {MIN_INPUT_SIZE}, "
                             f"got {value}")
    if (args.height == 0) != (args.width == 0):
        raise ValueError("give both --height and --width, or neither")
    if args.dynamic and args.format != "onnx":
        raise ValueError("--dynamic is supported for --format onnx only (TorchScript and TensorRT are fixed-size "
                         "here)")
    if args.precision == "fp16" and args.format != "tensorrt":
        raise ValueError("--precision fp16 applies to --format tensorrt only")
    if not args.out.parent.is_dir():
        raise ValueError(f"--out folder {args.out.parent} does not exist")
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a folder; give a file name")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    checkpoint = args.checkpoint if args.checkpoint is not None else default_checkpoint_path()
    try:
        _check_args(args)
        model = load_inference_model(checkpoint, args.keypoints)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = (args.height, args.width) if args.height else tuple(model.input_size)
    graph, names = _graph(model, args.part)
    graph.eval()
    sizes = [size]
    if args.dynamic:  # a second size proves the graph is not specialised to the first
        sizes.append((size[0] + 2 * INPUT_MULTIPLE, size[1] + INPUT_MULTIPLE))
    images = [parity_image(s, seed=i) for i, s in enumerate(sizes)]
    references = [_reference(graph, image) for image in images]  # before export may move the graph to a GPU

    fd, tmp_name = tempfile.mkstemp(prefix=f".{args.out.name}.", suffix=".tmp", dir=args.out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if args.format == "onnx":
            run = export_onnx(graph, images[0], names, tmp, args.dynamic)
        elif args.format == "torchscript":
            run = export_torchscript(graph, images[0], tmp)
        else:
            run = export_tensorrt(graph, images[0], tmp, args.precision, args.device)
        rows = [row for image, reference, s in zip(images, references, sizes)
                for row in compare_outputs(names, reference, run(image), s)]
        tolerance = TOLERANCE[args.precision]
        print(f"parity of {args.format} export of {checkpoint} ({args.part}, {args.precision}) against PyTorch:")
        print(format_rows(rows, tolerance))
        if not all(row.passes(tolerance) for row in rows):
            raise ValueError(f"exported {args.format} graph disagrees with PyTorch beyond relative error {tolerance}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.out)
    except BackendUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        tmp.unlink(missing_ok=True)
    dynamic = " (dynamic height/width)" if args.dynamic else ""
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB), input 1x3x{size[0]}x{size[1]}{dynamic}, "
          f"outputs {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
