"""Training-step cost of each network: forward + backward time and peak memory at KITTI-like sizes.

    python benchmarks/train_step.py [--sizes 640x192 320x96] [--batch 4] [--repeats 3] [--device cpu|cuda]
                                    [--models depth depth_lite keypoint keypoint_lite pose]

Prints one table: parameters, median and minimum milliseconds per forward + backward (after one warm-up step; the
minimum is the better estimate on a machine shared with other work) and peak memory.
On CUDA the peak is ``torch.cuda.max_memory_allocated`` during the steps (tensors only). On the CPU each case runs in
a fresh process and the peak is the growth of the process's maximum resident set size (``ru_maxrss``) over the
steps, measured after the model and inputs exist: activations, gradients and allocator overhead.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import statistics
import sys
import time

import torch

from priordepth_core.models import DepthNet, KeypointNet, PoseNet

MODELS = ("depth", "depth_lite", "keypoint", "keypoint_lite", "pose")


def _build(name: str) -> torch.nn.Module:
    if name == "depth":
        return DepthNet(num_layers=18)
    if name == "depth_lite":
        return DepthNet(num_layers=18, lite=True)
    if name == "keypoint":
        return KeypointNet(descriptor_dim=256)
    if name == "keypoint_lite":
        return KeypointNet(descriptor_dim=128, lite=True)
    if name == "pose":
        return PoseNet(num_layers=18)
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def _loss(name: str, model: torch.nn.Module, images: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """A scalar touching every output, so backward runs through every head."""
    if name.startswith("depth"):
        out = model(images)
        return sum(d.mean() for d in out["disp"])
    if name.startswith("keypoint"):
        out = model(images)
        return out["score"].mean() + out["coord"].mean() + out["desc"].mean()
    return model.T_context_target(images, context, -1)[:, :3].sum()


def _max_rss_mib() -> float:
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 ** 2  # Linux reports KiB, macOS bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def measure(name: str, width: int, height: int, batch: int, repeats: int, device: str) -> dict[str, float]:
    """Median and minimum forward + backward milliseconds and peak memory (MiB) for one model and input size."""
    torch.manual_seed(0)
    dev = torch.device(device)
    model = _build(name).to(dev).train()
    images = torch.rand(batch, 3, height, width, device=dev)
    context = torch.rand(batch, 3, height, width, device=dev)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        _loss(name, model, images, context).backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    baseline_rss = _max_rss_mib()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline_cuda = torch.cuda.memory_allocated() / 2 ** 20
    step()  # warm-up: allocator, cuDNN autotuning, lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2 ** 20 - baseline_cuda
    else:
        peak = _max_rss_mib() - baseline_rss
    params = sum(p.numel() for p in model.parameters())
    return {"ms": 1000.0 * statistics.median(times), "min_ms": 1000.0 * min(times), "peak_mib": peak,
            "params_m": params / 1e6}


def _measure_in_child(args: tuple) -> dict[str, float]:
    torch.set_num_threads(args[-1])
    return measure(*args[:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["640x192", "320x96"], help="WIDTHxHEIGHT, multiples of 32")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args()

    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else f", {threads} threads")
          + f", batch {args.batch}, median of {args.repeats} after 1 warm-up")
    memory_label = "peak CUDA MiB" if args.device.startswith("cuda") else "max RSS growth MiB"
    print(f"{'model':<15}{'params (M)':>11}{'size':>10}{'median ms':>11}{'min ms':>9}{memory_label:>20}")
    context = multiprocessing.get_context("spawn")
    for name in args.models:
        for width, height in sizes:
            case = (name, width, height, args.batch, args.repeats, args.device)
            if args.device.startswith("cuda"):
                result = measure(*case)
            else:  # a fresh process per case, so each max-RSS high-water mark is its own
                with context.Pool(1) as pool:
                    result = pool.apply(_measure_in_child, ((*case, threads),))
            print(f"{name:<15}{result['params_m']:>11.2f}{f'{width}x{height}':>10}{result['ms']:>11.1f}{result['min_ms']:>9.1f}"
                  f"{result['peak_mib']:>20.0f}", flush=True)


if __name__ == "__main__":
    main()
