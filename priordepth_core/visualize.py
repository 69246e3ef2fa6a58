"""Pictures for people: colourised depth, keypoint matches, image grids (numpy uint8 RGB out)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from matplotlib import colormaps


def to_uint8_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) float [0, 1] tensor or (H, W, 3) array -> (H, W, 3) uint8 RGB."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu()
        if image.dim() == 3 and image.shape[0] in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.numpy()
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if image.ndim == 2 or image.shape[-1] == 1:
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=-1)
    return np.ascontiguousarray(image)


def colorize_depth(depth: torch.Tensor | np.ndarray, vmax_percentile: float = 95.0, cmap: str = "magma",
                   invalid_color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Depth (H, W) -> (H, W, 3) uint8, drawn as inverse depth so that near structure gets the contrast.

    Invalid depth (0, negative or non-finite) is drawn in ``invalid_color``. The colour scale runs from 0 to the
    ``vmax_percentile`` of the valid inverse depth (MonoDepth2's visualisation).
    """
    if isinstance(depth, torch.Tensor):
        depth = depth.detach().float().cpu().numpy()
    depth = np.asarray(depth, dtype=np.float32).squeeze()
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W) after squeezing, got {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    inverse = np.zeros_like(depth)
    inverse[valid] = 1.0 / depth[valid]
    vmax = float(np.percentile(inverse[valid], vmax_percentile)) if valid.any() else 1.0
    normalised = np.clip(inverse / max(vmax, 1e-12), 0.0, 1.0)
    rgb = (colormaps[cmap](normalised)[..., :3] * 255.0 + 0.5).astype(np.uint8)
    rgb[~valid] = invalid_color
    return rgb


def draw_matches(image1: np.ndarray, image2: np.ndarray, points1: np.ndarray, points2: np.ndarray,
                 inliers: np.ndarray | None = None, max_lines: int = 200) -> np.ndarray:
    """Side-by-side images with match lines: inliers green, outliers red.

    Args:
        image1, image2: (H, W, 3) uint8 RGB of equal height.
        points1, points2: (M, 2) matched pixel coordinates.
        inliers: (M,) bool; all treated as inliers when omitted.
        max_lines: draw at most this many (evenly subsampled) to keep the picture readable.
    """
    if image1.shape[0] != image2.shape[0]:
        raise ValueError(f"images must have equal height, got {image1.shape} and {image2.shape}")
    canvas = np.concatenate([image1, image2], axis=1).copy()
    offset = image1.shape[1]
    count = len(points1)
    inliers = np.ones(count, dtype=bool) if inliers is None else np.asarray(inliers, dtype=bool)
    keep = np.linspace(0, count - 1, min(count, max_lines)).astype(int) if count else np.zeros(0, dtype=int)
    for i in keep:
        p1 = (round(float(points1[i, 0])), round(float(points1[i, 1])))
        p2 = (round(float(points2[i, 0])) + offset, round(float(points2[i, 1])))
        color = (0, 220, 0) if inliers[i] else (230, 30, 30)
        cv2.line(canvas, p1, p2, color, 1, cv2.LINE_AA)
        cv2.circle(canvas, p1, 2, color, -1, cv2.LINE_AA)
        cv2.circle(canvas, p2, 2, color, -1, cv2.LINE_AA)
    return canvas


def image_grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Stack equally sized (H, W, 3) uint8 tiles into a grid with ``pad`` white pixels between them."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(row) for row in rows)
    grid = np.full((len(rows) * (height + pad) - pad, columns * (width + pad) - pad, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            if tile.shape[:2] != (height, width):
                tile = cv2.resize(tile, (width, height), interpolation=cv2.INTER_AREA)
            grid[r * (height + pad): r * (height + pad) + height, c * (width + pad): c * (width + pad) + width] = tile
    return grid
