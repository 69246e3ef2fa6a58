"""A tiny TUM-format sequence with exact ground truth: a textured fronto-parallel plane seen by a sideways camera.

For a plane at depth d parallel to the image, a sideways camera move of tx shifts the image by f * tx / d pixels,
so each frame is a crop of one large texture and depth and poses are exact.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

FOCAL = 80.0
PLANE_DEPTH = 4.0
SHIFT_PX = 3  # per frame


def write_plane_sequence(root: Path, frames: int = 12, height: int = 64, width: int = 96, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    big = rng.random((height // 4 + 2, (width + SHIFT_PX * frames) // 4 + 2, 3)).astype(np.float32)
    texture = cv2.resize(big, (width + SHIFT_PX * frames + 8, height + 8), interpolation=cv2.INTER_CUBIC)
    texture = cv2.GaussianBlur(texture, (3, 3), 0.7)
    texture = (np.clip(texture, 0, 1) * 255).astype(np.uint8)
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines, depth_lines, gt_lines = ["# color images"], ["# depth maps"], ["# timestamp tx ty tz qx qy qz qw"]
    depth_png = np.full((height, width), int(PLANE_DEPTH * 5000), dtype=np.uint16)
    for i in range(frames):
        stamp = f"{100 + i / 30:.6f}"
        x0 = 4 + SHIFT_PX * i
        crop = texture[4:4 + height, x0:x0 + width]
        cv2.imwrite(str(root / "rgb" / f"{stamp}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "depth" / f"{stamp}.png"), depth_png)
        rgb_lines.append(f"{stamp} rgb/{stamp}.png")
        depth_lines.append(f"{stamp} depth/{stamp}.png")
        tx = SHIFT_PX * i * PLANE_DEPTH / FOCAL  # the view moves right as the crop moves right
        gt_lines.append(f"{stamp} {tx:.9f} 0 0 0 0 0 1")
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    (root / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")
    (root / "intrinsics.txt").write_text(f"{FOCAL} {FOCAL} {(width - 1) / 2} {(height - 1) / 2} {width} {height}\n")
    return root


@pytest.fixture(scope="session")
def plane_sequence(tmp_path_factory) -> Path:
    return write_plane_sequence(tmp_path_factory.mktemp("plane_sequence") / "seq")
