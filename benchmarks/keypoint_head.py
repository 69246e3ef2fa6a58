"""The KP2D descriptor head against the light one: MACs, ONNX Runtime latency and match accuracy, side by side.

    OMP_NUM_THREADS=1 python benchmarks/keypoint_head.py [--old FILE] [--light FILE] [--sizes 320x96 640x192]
                                                        [--runs 40] [--threads 1] [--json OUT.json]

``--old`` is the shipped KeypointNet (default: the one inside ``priordepth_core/assets/priordepth_indoor.pt``; the
driving model holds the same weights), ``--light`` the light-head KeypointNet (default
``experiments/models/keypoint_net_light.pt``); each may be any file the Pipeline's ``keypoint_checkpoint`` reads.

- MACs: every convolution's multiply-accumulates for one image (forward hooks; BatchNorm, activations, the pixel
  shuffle and the keypoint decoding are not counted), split into encoder, score + location heads and descriptor head.
- Latency: the KeypointNet graph the Pipeline's ``onnxruntime`` backend runs (``KeypointGraph``, the same export and
  session options, ``--threads`` intra-op threads), batch 1, the median (and 10th percentile) of ``--runs`` runs
  after 5 warm-up runs; the two nets (and the shipped DepthNet, for reference) run in turn, so a load on the machine
  hits them alike.
- Accuracy: ``python -m priordepth_core.evaluate keypoints``'s protocol and defaults (KP2D: 300 keypoints for
  repeatability and localisation error, 1000 for homography correctness C1/C3/C5 and matching score) on graf1 ->
  graf3 (``--graf``) and on 12 random homography warps of coffee, rocket and graf1 (seed 0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from priordepth_core.evaluate.keypoint_cli import DEFAULT_SYNTHETIC_IMAGES, synthetic_images
from priordepth_core.evaluate.keypoint_eval import (
    DEFAULT_GRAF_DIR,
    KeypointNetDetector,
    evaluate_pair,
    evaluate_synthetic_pairs,
    load_graf_pair,
)
from priordepth_core.inference.backends import onnx_graph_bytes, ort_session_options
from priordepth_core.inference.model_file import load_inference_model, load_keypoint_net_file, model_path
from priordepth_core.inference.networks import DEPTH_OUTPUTS, IMAGE_NAME, KEYPOINT_OUTPUTS, DepthGraph, KeypointGraph
from priordepth_core.models import KeypointNet

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OLD = model_path("indoor")
DEFAULT_LIGHT = ROOT / "experiments" / "models" / "keypoint_net_light.pt"
ACCURACY_KEYS = ("repeatability", "localization_error", "correctness_1", "correctness_3", "correctness_5",
                 "matching_score", "mean_corner_error", "num_matches", "num_inliers")


def conv_macs(net: KeypointNet, height: int, width: int) -> dict[str, int]:
    """Convolution multiply-accumulates of one (height, width) image by part: encoder, detector heads, descriptor."""
    parts = {"encoder": 0, "score+location": 0, "descriptor": 0}

    def part(name: str) -> str:
        if name.startswith("conv"):
            return "encoder"
        if name.startswith(("score_head", "location_head")):
            return "score+location"
        return "descriptor"

    def counter(key: str):
        def hook(module, _, output):
            parts[key] += (output.numel() * module.kernel_size[0] * module.kernel_size[1] * module.in_channels
                           // module.groups)
        return hook

    handles = [module.register_forward_hook(counter(part(name))) for name, module in net.named_modules()
               if isinstance(module, torch.nn.Conv2d)]
    with torch.no_grad():
        net(torch.rand(1, 3, height, width))
    for handle in handles:
        handle.remove()
    return {**parts, "total": sum(parts.values())}


def ort_latency(graphs: dict[str, tuple[torch.nn.Module, tuple[str, ...]]], size: tuple[int, int], threads: int,
                runs: int, warmup: int = 5) -> dict[str, dict[str, float]]:
    """Median / 10th-percentile ms of each graph in ONNX Runtime at ``size`` = (H, W), the graphs taking turns."""
    import onnxruntime as ort

    sessions = {name: ort.InferenceSession(onnx_graph_bytes(graph, size, outputs, None), ort_session_options(threads),
                                           providers=["CPUExecutionProvider"])
                for name, (graph, outputs) in graphs.items()}
    image = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for index in range(warmup + runs):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {IMAGE_NAME: image})
            if index >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: {"median_ms": statistics.median(values), "p10_ms": float(np.percentile(values, 10))}
            for name, values in times.items()}


def accuracy(net: KeypointNet, graf: Path, pairs: int) -> dict[str, dict[str, float]]:
    """``evaluate keypoints``' metrics of ``net`` (its defaults) on graf1 -> graf3 and the synthetic pairs."""
    detector = KeypointNetDetector(net, top_k=1000)
    result = {}
    if (graf / "graf1.png").is_file():
        image1, image3, H_1to3 = load_graf_pair(graf)
        result["graf1->graf3"] = evaluate_pair(detector, image1, image3, H_1to3, 1000, 300)
    names = [n for n in DEFAULT_SYNTHETIC_IMAGES if n != "graf1" or (graf / "graf1.png").is_file()]
    if pairs:
        result["synthetic"] = evaluate_synthetic_pairs(detector, synthetic_images(names, graf), pairs, 0, 1000, 300)
    return result


def _size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return height, width


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=str(DEFAULT_OLD), help="the current KeypointNet (default: the shipped one)")
    parser.add_argument("--light", default=str(DEFAULT_LIGHT), help="the light-head KeypointNet")
    parser.add_argument("--sizes", nargs="+", type=_size, default=[(96, 320), (192, 640)], metavar="WxH")
    parser.add_argument("--runs", type=int, default=40, help="timed runs per graph and size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--graf", type=Path, default=DEFAULT_GRAF_DIR)
    parser.add_argument("--synthetic-pairs", type=int, default=12)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every number as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    nets = {"kp2d (shipped)": load_keypoint_net_file(args.old)[0], "light": load_keypoint_net_file(args.light)[0]}
    depth_net = load_inference_model(model_path("driving")).depth_net
    report: dict = {"old": args.old, "light": args.light, "threads": args.threads, "runs": args.runs,
                    "parameters": {n: sum(p.numel() for p in net.parameters()) for n, net in nets.items()},
                    "macs": {}, "latency": {}, "accuracy": {}}
    for height, width in args.sizes:
        key = f"{width}x{height}"
        report["macs"][key] = {n: conv_macs(net, height, width) for n, net in nets.items()}
        graphs = {n: (KeypointGraph(net), KEYPOINT_OUTPUTS) for n, net in nets.items()}
        graphs["depth (reference)"] = (DepthGraph(depth_net), DEPTH_OUTPUTS)
        report["latency"][key] = ort_latency(graphs, (height, width), args.threads, args.runs)
        print(f"{key}: {json.dumps(report['latency'][key])}", file=sys.stderr, flush=True)
    if not args.skip_accuracy:
        for name, net in nets.items():
            report["accuracy"][name] = accuracy(net, args.graf, args.synthetic_pairs)

    names = list(nets)
    print(f"KeypointNet heads, {args.threads} thread(s); old = {args.old}, light = {args.light}\n")
    print("| measure | " + " | ".join(names) + " | light / kp2d |")
    print("|---|" + "---:|" * (len(names) + 1))
    counts = report["parameters"]
    print(f"| parameters | {counts[names[0]]:,} | {counts[names[1]]:,} | {counts[names[1]] / counts[names[0]]:.2f} |")
    for size, macs in report["macs"].items():
        for part in ("total", "descriptor", "encoder", "score+location"):
            a, b = macs[names[0]][part] / 1e9, macs[names[1]][part] / 1e9
            print(f"| GMAC {size} {part} | {a:.3f} | {b:.3f} | {b / a:.2f} |")
    for size, latency in report["latency"].items():
        a, b = latency[names[0]]["median_ms"], latency[names[1]]["median_ms"]
        print(f"| ORT ms {size} median (p10) | {a:.1f} ({latency[names[0]]['p10_ms']:.1f}) | "
              f"{b:.1f} ({latency[names[1]]['p10_ms']:.1f}) | {b / a:.2f} |")
        print(f"| ORT ms {size} DepthNet, reference | {latency['depth (reference)']['median_ms']:.1f} | | |")
    for benchmark in report["accuracy"].get(names[0], {}):
        for metric in ACCURACY_KEYS:
            a, b = (report["accuracy"][n][benchmark][metric] for n in names)
            print(f"| {benchmark} {metric} | {a:.4f} | {b:.4f} | |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
