"""Speed and memory of the streaming Pipeline per stage, for each available backend and input size.

    python benchmarks/pipeline.py [--backends torch onnxruntime tensorrt] [--sizes 640x192 320x96 640x480]
                                  [--threads 1 2] [--frames 60] [--warmup 10] [--concurrent both|on|off]
                                  [--checkpoint C]

Every configuration runs in its own process (so its peak memory is its own) on a rendered synthetic street
sequence (car motion, exact scene) at the input size, batch 1, the network input equal to the image size. The first
``--warmup`` frames are not timed; the table gives the median over the remaining frames (at least 50 by default) of
each stage's milliseconds (preprocess, depth, keypoints, matching, pose; scale is 0 in the default relative mode)
and of the end-to-end time, the FPS it implies, and the process's peak resident memory (peak CUDA memory too on a
GPU). With concurrent networks the depth and keypoint stages overlap, so the stages no longer add up to the total.
A backend that cannot run here (TensorRT without CUDA) is listed with the reason.
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
    """``count`` frames of the synthetic street at ``width`` x ``height``: (rgb list, K, stamps)."""
    from priordepth_core.data.synthetic import Renderer, SequenceSpec, make_sequence
    from priordepth_core.data.synthetic.sequence import render_frames as render

    sequence = make_sequence(SequenceSpec("street", "car", count, width, height, seed))
    with Renderer(width, height) as renderer:
        frames = [rgb for _, rgb, _ in render(sequence, renderer)]
    return frames, sequence.K, sequence.trajectory.stamps


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

    from priordepth_core.inference import BackendUnavailableError, Pipeline, PipelineConfig

    width, height = parse_size(args.size)
    torch.set_num_threads(args.thread_count)
    with np.load(args.frames_file) as data:
        frames, K, stamps = list(data["frames"]), data["K"], data["stamps"]
    config = PipelineConfig(backend=args.backend, device=args.device, input_height=height, input_width=width,
                            num_threads=args.thread_count, concurrent_networks=args.concurrent == "on",
                            precision=args.precision)
    try:
        pipeline = Pipeline(config, args.checkpoint)
    except BackendUnavailableError as exc:
        return {"error": str(exc)}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    timings = {stage: [] for stage in STAGES}
    states = []
    for index, (rgb, stamp) in enumerate(zip(frames, stamps)):
        result = pipeline.process(rgb, K, float(stamp))
        states.append(result.tracking_state.value)
        if index >= args.warmup:
            for stage in STAGES:
                timings[stage].append(result.timings_ms[stage])
    medians = {stage: statistics.median(values) for stage, values in timings.items()}
    out = {"ms": medians, "fps": 1000.0 / medians["total"], "frames_timed": len(timings["total"]),
           "peak_rss_mib": peak_rss_mib(),
           "tracking_ok": states.count("ok"), "frames": len(states),
           "total_p90_ms": float(np.percentile(timings["total"], 90))}
    if torch.cuda.is_available():
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_configuration(args: argparse.Namespace, backend: str, size: str, threads: int, concurrent: str,
                      frames_file: str) -> dict:
    command = [sys.executable, __file__, "--worker", "--backend", backend, "--size", size, "--thread-count",
               str(threads), "--frames", str(args.frames), "--warmup", str(args.warmup), "--concurrent", concurrent,
               "--device", "cuda" if backend == "tensorrt" else args.device, "--precision", args.precision,
               "--frames-file", frames_file]
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
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime", "tensorrt"])
    parser.add_argument("--sizes", nargs="+", default=["640x192", "320x96", "640x480"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--concurrent", choices=("both", "on", "off"), default="both",
                        help="concurrent depth/keypoint networks (only with 1 thread each)")
    parser.add_argument("--frames", type=int, default=60, help="frames per configuration, warm-up included")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (tensorrt always runs on cuda)")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp16", help="TensorRT precision")
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
    header = ("| backend | input | threads | concurrent | " + " | ".join(STAGES[:-1]) +
              " | total ms | FPS | p90 total ms | peak RSS MiB | tracked ok |")
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    # Frames are rendered here, once per size, so that the renderer's memory is not counted in the workers' peak.
    with tempfile.TemporaryDirectory(prefix="priordepth-bench-") as folder:
        frame_files = {}
        for size in args.sizes:
            frames, K, stamps = render_frames(*parse_size(size), args.frames)
            frame_files[size] = os.path.join(folder, f"{size}.npz")
            np.savez(frame_files[size], frames=np.stack(frames), K=K, stamps=stamps)
        for backend in args.backends:
            print_backend(args, backend, frame_files)
    return 0


def print_backend(args: argparse.Namespace, backend: str, frame_files: dict[str, str]) -> None:
    """One table row per configuration of ``backend``; one "unavailable" row if it cannot run here."""
    for size, threads, concurrent in configurations(args):
        result = run_configuration(args, backend, size, threads, concurrent, frame_files[size])
        if "error" in result:
            print(f"| {backend} | all | - | - | unavailable: {result['error']} |", flush=True)
            return
        ms = result["ms"]
        cells = " | ".join(f"{ms[s]:.1f}" for s in STAGES[:-1])
        memory = f"{result['peak_rss_mib']:.0f}"
        if "peak_cuda_mib" in result:
            memory += f" (CUDA {result['peak_cuda_mib']:.0f})"
        print(f"| {backend} | {size} | {threads} | {concurrent} | {cells} | {ms['total']:.1f} | "
              f"{result['fps']:.1f} | {result['total_p90_ms']:.1f} | {memory} | "
              f"{result['tracking_ok']}/{result['frames']} |", flush=True)

if __name__ == "__main__":
    sys.exit(main())
