"""Contact sheet of the named suites (RGB above colourised inverse depth, black = sky / invalid), for the docs.

Run: ``python -m priordepth_core.data.synthetic.contact_sheet --out docs/synthetic_suites.png`` (generates the
suites into the cache first if needed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from ...visualize import colorize_depth, image_grid
from .suites import SUITES, ensure_suite, load_manifest

TILE_WIDTH = 320


def suite_tiles(name: str, frames_per_suite: int = 4) -> list[list[np.ndarray]]:
    """Two rows (RGB, depth) of frames spread over the suite's train and test sequences."""
    root = ensure_suite(name)
    manifest = load_manifest(root)
    entries = manifest["splits"]["train"] + manifest["splits"]["test"]
    rgb_row, depth_row = [], []
    for k in range(frames_per_suite):
        entry = entries[(k * (len(entries) - 1)) // max(frames_per_suite - 1, 1)]
        folder = root / entry["path"]
        names = sorted(p.stem for p in (folder / "depth_exact").iterdir())
        stem = names[(k * 37 + 20) % len(names)]
        rgb = cv2.cvtColor(cv2.imread(str(folder / "rgb" / f"{stem}.png")), cv2.COLOR_BGR2RGB)
        depth = np.load(folder / "depth_exact" / f"{stem}.npy")
        scale = TILE_WIDTH / rgb.shape[1]
        size = (TILE_WIDTH, round(rgb.shape[0] * scale))
        rgb_row.append(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
        depth_row.append(cv2.resize(colorize_depth(depth), size, interpolation=cv2.INTER_NEAREST))
    return [rgb_row, depth_row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/synthetic_suites.png"))
    args = parser.parse_args()
    blocks = []
    for name in SUITES:
        grid = image_grid(suite_tiles(name))
        label = np.full((22, grid.shape[1], 3), 255, dtype=np.uint8)
        cv2.putText(label, f"{name}: {SUITES[name].description}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0))
        blocks += [label, grid, np.full((6, grid.shape[1], 3), 255, dtype=np.uint8)]
    sheet = np.concatenate(blocks, axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(args.out)


if __name__ == "__main__":
    main()
