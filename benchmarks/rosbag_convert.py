"""Conversion speed of rosbag_tools on a 640x480 sequence, and bag sizes for mcap and sqlite3.

A synthetic room sequence (handheld motion, exact float depth and poses) is rendered once into TUM layout; then, for
each storage, the table gives frames per second of
- ``write``: in-memory frames -> bag (serialization + storage only; rgb8, CameraInfo, 32FC1 depth, /tf, odometry),
- ``tum2bag``: the sequence folder -> bag as the command runs it (the TUM reader decodes PNG rgb + .npy depth),
- ``bag2frames``: bag -> TUM-layout sequence with poses and depth (decode, PNG encode of rgb and 16-bit depth),
and the bag size, for mcap and sqlite3 as written by default (uncompressed) and for mcap with zstd chunks.

Run: ``.venv/bin/python benchmarks/rosbag_convert.py [--frames N] [--threads T]``. Disk speed matters; the numbers
in the README were taken on the project's 2-core CPU machine with the temporary folder on local disk.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import torch

from priordepth_core.data.synthetic import SequenceSpec, make_sequence, write_sequence
from rosbag_tools.bag_to_frames import extract_frames
from rosbag_tools.bag_writer import write_bag
from rosbag_tools.sources import CameraSequence, tum_sequence


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _in_memory(sequence: CameraSequence) -> CameraSequence:
    frames = list(sequence.frames())
    return CameraSequence(name=sequence.name, K=sequence.K, stamps=sequence.stamps, frames=lambda: iter(frames),
                          T_world_cam=sequence.T_world_cam, has_depth=sequence.has_depth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100, help="sequence length (default 100)")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV / torch threads (default 1)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="rosbag_convert_") as folder:
        root = Path(folder)
        print(f"rendering {args.frames} frames at {width}x{height} ...", flush=True)
        spec = SequenceSpec("room", "handheld", args.frames, width, height, seed=0)
        source = write_sequence(make_sequence(spec), root / "sequence", "tum", progress=False)
        sequence = tum_sequence(source)
        memory = _in_memory(sequence)
        raw_bytes = args.frames * width * height * (3 + 4)  # rgb8 + 32FC1 pixels alone
        print(f"{args.frames} frames {width}x{height} (room, handheld), {os.cpu_count()} CPUs visible, "
              f"{args.threads} thread(s); pixel payload {raw_bytes / 2**20:.1f} MiB\n")
        print("| storage | write fps | tum2bag fps | bag2frames fps | bag size MiB | MiB/frame |")
        print("| --- | --- | --- | --- | --- | --- |")
        for storage, compress in (("mcap", False), ("sqlite3", False), ("mcap", True)):
            name = storage + ("_zstd" if compress else "")
            start = time.perf_counter()
            write_bag(memory, root / f"memory_{name}", storage, compress=compress, progress=False)
            write_fps = args.frames / (time.perf_counter() - start)
            start = time.perf_counter()
            write_bag(tum_sequence(source), root / f"bag_{name}", storage, compress=compress, progress=False)
            tum2bag_fps = args.frames / (time.perf_counter() - start)
            start = time.perf_counter()
            extract_frames(root / f"bag_{name}", root / f"frames_{name}", pose_topic="/ground_truth/odometry",
                           depth_topic="/ground_truth/depth", progress=False)
            bag2frames_fps = args.frames / (time.perf_counter() - start)
            size = _size(root / f"bag_{name}")
            label = f"{storage} + zstd (--compress)" if compress else storage
            print(f"| {label} | {write_fps:.1f} | {tum2bag_fps:.1f} | {bag2frames_fps:.1f} | {size / 2**20:.1f} | "
                  f"{size / 2**20 / args.frames:.2f} |")
        print(f"\nsource TUM folder (PNG rgb + PNG depth + .npy depth): {_size(source) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
