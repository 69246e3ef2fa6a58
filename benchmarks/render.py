"""Frames per second of the synthetic generator: render only, and render + write (TUM layout, PNGs + .npy).

Run: ``.venv/bin/python benchmarks/render.py [--frames N]``. Uses one CPU OpenGL context (Mesa llvmpipe when no
GPU driver is present); numbers depend on the CPU cores available.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import moderngl

from priordepth_core.data.synthetic import Renderer, SequenceSpec, make_sequence, write_sequence

CASES = [("street", "car", 640, 480), ("street", "car", 640, 192), ("room", "handheld", 640, 480),
         ("room", "handheld", 640, 192)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    with Renderer(8, 8) as probe:
        print(f"OpenGL: {probe.ctx.info['GL_RENDERER']} (moderngl {moderngl.__version__})")
    print("| scene | motion | size | render fps | render ms | render+write fps | render+write ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for scene, motion, width, height in CASES:
        sequence = make_sequence(SequenceSpec(scene, motion, args.frames, width, height, seed=0))
        with Renderer(width, height) as renderer:
            renderer.load_scene(sequence.scene)
            renderer.render(sequence.K, sequence.trajectory.T_world_cam[0])  # warm-up (shader compilation)
            start = time.perf_counter()
            for T_world_cam in sequence.trajectory.T_world_cam:
                renderer.render(sequence.K, T_world_cam)
            render_s = (time.perf_counter() - start) / args.frames
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                write_sequence(sequence, Path(folder) / "seq", "tum", renderer=renderer, progress=False)
                write_s = (time.perf_counter() - start) / args.frames
        print(f"| {scene} | {motion} | {width}x{height} | {1 / render_s:.1f} | {1000 * render_s:.1f} | "
              f"{1 / write_s:.1f} | {1000 * write_s:.1f} |")


if __name__ == "__main__":
    main()
