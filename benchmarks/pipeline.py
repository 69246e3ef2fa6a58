"""Speed and memory of the streaming Pipeline per stage, for each available backend, precision and input size,
beside the classical VO chain a user could run instead (OpenCV ORB + 5-point RANSAC + recoverPose per frame).

    python benchmarks/pipeline.py [--backends openvino onnxruntime torch tensorrt] [--precisions auto fp32]
                                  [--sizes 640x192 320x96 640x480] [--threads 1 2] [--frames 60] [--warmup 10]
                                  [--concurrent both|on|off] [--pose-sources pnp_essential poselib_pnp_essential]
                                  [--checkpoint C]

``--precisions``: each backend runs each listed precision it supports ("auto" = INT8 for openvino and onnxruntime
on the CPU, FP16 for tensorrt, FP32 for torch; duplicates after resolving are run once). The precision column says
what each network actually ran in (an INT8 graph that fails its parity check against FP32 runs in FP32).

Every configuration runs in its own process (so its peak memory is its own) on a rendered synthetic street
sequence (car motion, exact scene) at the input size, batch 1, the network input equal to the image size. The first
``--warmup`` frames are not timed; the table gives the median over the remaining frames (at least 50 by default) of
each stage's milliseconds (preprocess, depth, keypoints, matching, pose; scale is 0 in the default relative mode)
and of the end-to-end time, the FPS it implies, and the process's peak resident memory (peak CUDA memory too on a
GPU), and the depth's abs_rel against the exact rendered depth (median-scaled, every frame, 1e-3-80 m: the accuracy
each backend and precision keeps). With concurrent networks the depth and keypoint stages overlap, so the stages no
longer add up to the total. A backend that cannot run here (TensorRT without CUDA) is listed with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile

STAGES = ("preprocess", "depth", "keypoints", "matching", "pose", "total")


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def render_frames(width: int, height: int, count: int, seed: int = 901):
    """``count`` frames of the synthetic street at ``width`` x ``height``: (rgb list, K, stamps, exact depth list)."""
    from priordepth_core.data.synthetic import Renderer, SequenceSpec, make_sequence
    from priordepth_core.data.synthetic.sequence import render_frames as render

    sequence = make_sequence(SequenceSpec("street", "car", count, width, height, seed))
    with Renderer(width, height) as renderer:
        rendered = [(rgb, depth) for _, rgb, depth in render(sequence, renderer)]
    return [r for r, _ in rendered], sequence.K, sequence.trajectory.stamps, [d for _, d in rendered]


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it does not inherit the forking parent's)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # non-Linux: the closest available


def worker(args: argparse.Namespace) -> dict:
    """Run one configuration and return its measurements (in a fresh process)."""
    import numpy as np
    import torch

    from priordepth_core.evaluate.depth_metrics import compute_depth_metrics
    from priordepth_core.inference import BackendUnavailableError, Pipeline, PipelineConfig

    width, height = parse_size(args.size)
    torch.set_num_threads(args.thread_count)
    with np.load(args.frames_file) as data:
        frames, K, stamps, depths = list(data["frames"]), data["K"], data["stamps"], list(data["depths"])
    if args.backend == "orb":
        return orb_worker(frames, K, args.warmup)
    config = PipelineConfig(backend=args.backend, device=args.device, input_height=height, input_width=width,
                            num_threads=args.thread_count, concurrent_networks=args.concurrent == "on",
                            precision=args.precision, pose_source=args.pose_source)
    try:
        pipeline = Pipeline(config, args.checkpoint)
    except BackendUnavailableError as exc:
        return {"error": str(exc)}
    precision = pipeline.network_precision()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    timings = {stage: [] for stage in STAGES}
    states = []
    abs_rel = []
    for index, (rgb, stamp, depth_true) in enumerate(zip(frames, stamps, depths)):
        result = pipeline.process(rgb, K, float(stamp))
        states.append(result.tracking_state.value)
        abs_rel.append(compute_depth_metrics(depth_true, result.depth, crop=None)["abs_rel"])
        if index >= args.warmup:
            for stage in STAGES:
                timings[stage].append(result.timings_ms[stage])
    medians = {stage: statistics.median(values) for stage, values in timings.items()}
    out = {"ms": medians, "fps": 1000.0 / medians["total"], "frames_timed": len(timings["total"]),
           "precision": precision,
           "peak_rss_mib": peak_rss_mib(),
           "tracking_ok": states.count("ok"), "frames": len(states),
           "total_p90_ms": float(np.percentile(timings["total"], 90)), "abs_rel": float(np.mean(abs_rel))}
    if torch.cuda.is_available():
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def orb_worker(frames: list, K, warmup: int) -> dict:
    """The peer: OpenCV ORB (2000 features) + brute-force Hamming matching + 5-point RANSAC + recoverPose per
    consecutive pair (trajectory_eval's settings), timed per frame like the Pipeline (no depth: no scale)."""
    import time

    import cv2
    import numpy as np

    from priordepth_core.evaluate.trajectory_eval import ORB_FEATURES, ORB_RANSAC_THRESHOLD_PX

    orb = cv2.ORB_create(nfeatures=ORB_FEATURES)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    previous, timings, tracked = None, [], 0
    for index, rgb in enumerate(frames):
        start = time.perf_counter()
        keypoints, descriptors = orb.detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)
        detected = time.perf_counter()
        ok = False
        if previous is not None and descriptors is not None and previous[1] is not None:
            matches = matcher.match(descriptors, previous[1])
            if len(matches) >= 8:
                x_curr = np.float64([keypoints[m.queryIdx].pt for m in matches])
                x_prev = np.float64([previous[0][m.trainIdx].pt for m in matches])
                try:
                    E, mask = cv2.findEssentialMat(x_curr, x_prev, K, method=cv2.RANSAC, prob=0.999,
                                                   threshold=ORB_RANSAC_THRESHOLD_PX)
                except cv2.error:  # a degenerate sample (a camera almost at rest): this pair fails
                    E = None
                if E is not None and E.shape == (3, 3):
                    ok = cv2.recoverPose(E, x_curr, x_prev, K, mask=mask)[0] >= 8
        end = time.perf_counter()
        previous = (keypoints, descriptors)
        tracked += int(ok)
        if index >= warmup:
            timings.append(((detected - start) * 1e3, (end - detected) * 1e3, (end - start) * 1e3))
    detect, pose, total = (statistics.median(column) for column in zip(*timings))
    ms = {"preprocess": 0.0, "depth": float("nan"), "keypoints": detect, "matching": float("nan"), "pose": pose,
          "total": total}
    return {"ms": ms, "fps": 1000.0 / total, "frames_timed": len(timings), "precision": "-",
            "peak_rss_mib": peak_rss_mib(), "tracking_ok": tracked, "frames": len(frames),
            "total_p90_ms": float(np.percentile([t[2] for t in timings], 90)), "abs_rel": float("nan")}


def run_configuration(args: argparse.Namespace, backend: str, precision: str, pose_source: str, size: str,
                      threads: int, concurrent: str, frames_file: str) -> dict:
    command = [sys.executable, __file__, "--worker", "--backend", backend, "--size", size, "--thread-count",
               str(threads), "--frames", str(args.frames), "--warmup", str(args.warmup), "--concurrent", concurrent,
               "--device", "cuda" if backend == "tensorrt" else args.device, "--precision", precision,
               "--pose-source", pose_source, "--frames-file", frames_file]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["worker failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def configurations(args: argparse.Namespace):
    """(size, threads, concurrent) in table order; concurrent networks only with one thread each."""
    for size in args.sizes:
        for threads in args.threads:
            if threads != 1:
                yield size, threads, "off"
            elif args.concurrent == "both":
                yield size, threads, "off"
                yield size, threads, "on"
            else:
                yield size, threads, args.concurrent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["openvino", "onnxruntime", "torch", "tensorrt"])
    parser.add_argument("--precisions", nargs="+", default=["auto", "fp32"],
                        help="precisions per backend (auto = the backend's fastest with parity)")
    parser.add_argument("--pose-sources", nargs="+", default=["pnp_essential"],
                        help="Pipeline pose sources to time (e.g. pnp_essential poselib_pnp_essential)")
    parser.add_argument("--no-peer", action="store_true", help="leave out the OpenCV ORB + 5-point row")
    parser.add_argument("--sizes", nargs="+", default=["640x192", "320x96", "640x480"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--concurrent", choices=("both", "on", "off"), default="both",
                        help="concurrent depth/keypoint networks (only with 1 thread each)")
    parser.add_argument("--frames", type=int, default=60, help="frames per configuration, warm-up included")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (tensorrt always runs on cuda)")
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--pose-source", default="pnp_essential", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", default="", help="model (default: the shipped one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--thread-count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--frames-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.checkpoint = args.checkpoint or None
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    if args.frames - args.warmup < 1:
        parser.error("--frames must exceed --warmup")

    import numpy as np
    import torch

    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}; "
          f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{args.frames - args.warmup} timed frames after {args.warmup} warm-up frames, batch 1, median ms\n")
    header = ("| backend | precision | pose source | input | threads | concurrent | " + " | ".join(STAGES[:-1]) +
              " | total ms | FPS | p90 total ms | peak RSS MiB | tracked ok | depth abs_rel |")
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    # Frames are rendered here, once per size, so that the renderer's memory is not counted in the workers' peak.
    with tempfile.TemporaryDirectory(prefix="priordepth-bench-") as folder:
        frame_files = {}
        for size in args.sizes:
            frames, K, stamps, depths = render_frames(*parse_size(size), args.frames)
            frame_files[size] = os.path.join(folder, f"{size}.npz")
            np.savez(frame_files[size], frames=np.stack(frames), K=K, stamps=stamps, depths=np.stack(depths))
        for backend in args.backends:
            for precision in backend_precisions(backend, args.precisions, args.device):
                for pose_source in args.pose_sources:
                    print_backend(args, backend, precision, pose_source, frame_files)
        if not args.no_peer:
            for size in args.sizes:
                print_row("opencv orb+5pt", size, 1, "off", "orb + 5-point",
                          run_configuration(args, "orb", "auto", "-", size, 1, "off", frame_files[size]))
    return 0


def backend_precisions(backend: str, precisions: list[str], device: str) -> list[str]:
    """The listed precisions ``backend`` supports, deduplicated after resolving "auto" (fp16 means TensorRT)."""
    from priordepth_core.inference.config import resolve_precision

    resolved = []
    for precision in precisions:
        try:
            value = resolve_precision(backend, precision, "cuda" if backend == "tensorrt" else device)
        except ValueError:
            continue
        if value not in resolved:
            resolved.append(value)
    return resolved


def print_backend(args: argparse.Namespace, backend: str, precision: str, pose_source: str,
                  frame_files: dict[str, str]) -> None:
    """One table row per configuration of ``backend``; one "unavailable" row if it cannot run here."""
    for size, threads, concurrent in configurations(args):
        result = run_configuration(args, backend, precision, pose_source, size, threads, concurrent,
                                   frame_files[size])
        if "error" in result:
            print(f"| {backend} | {precision} | {pose_source} | all | - | - | unavailable: {result['error']} |",
                  flush=True)
            return
        print_row(backend, size, threads, concurrent, pose_source, result)


def print_row(backend: str, size: str, threads: int, concurrent: str, pose_source: str, result: dict) -> None:
    if "error" in result:
        print(f"| {backend} | - | {pose_source} | {size} | - | - | failed: {result['error']} |", flush=True)
        return
    ms = result["ms"]
    cells = " | ".join("-" if ms[s] != ms[s] else f"{ms[s]:.1f}" for s in STAGES[:-1])
    memory = f"{result['peak_rss_mib']:.0f}"
    if "peak_cuda_mib" in result:
        memory += f" (CUDA {result['peak_cuda_mib']:.0f})"
    print(f"| {backend} | {result['precision']} | {pose_source} | {size} | {threads} | {concurrent} | {cells} | "
          f"{ms['total']:.1f} | {result['fps']:.1f} | {result['total_p90_ms']:.1f} | {memory} | "
          f"{result['tracking_ok']}/{result['frames']} | "
          f"{'-' if result['abs_rel'] != result['abs_rel'] else format(result['abs_rel'], '.4f')} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
