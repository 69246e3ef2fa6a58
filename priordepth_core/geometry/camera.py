"""Pinhole camera helpers: intrinsics under resizing, back-projection and projection.

Conventions (ARCHITECTURE.md): optical frames (x right, y down, z forward), pixel centres at integer coordinates
(OpenCV), column vectors, a leading batch dimension everywhere.
"""

from __future__ import annotations

import numpy as np
import torch

from .validation import check_shape

# Points closer than this to the image plane cannot be projected meaningfully; they are flagged, not divided by.
MIN_DEPTH_EPS = 1e-6


def scale_intrinsics(K: torch.Tensor, scale_x: float | torch.Tensor, scale_y: float | torch.Tensor) -> torch.Tensor:
    """Intrinsics of an image resized by ``(scale_x, scale_y)``.

    Pixel centres sit at integer coordinates, so a pixel coordinate maps as ``x' = (x + 0.5) * s - 0.5``; the focal
    lengths scale by ``s`` and the principal point follows the same map (MonoDepth2 drops the half-pixel terms,
    which shifts the principal point by up to half a pixel at 1/8 resolution).

    Args:
        K: (..., 3, 3) intrinsics.
        scale_x: new_width / old_width.
        scale_y: new_height / old_height.

    Returns:
        (..., 3, 3) scaled intrinsics, same dtype/device as ``K``.

    Example:
        >>> K = torch.tensor([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
        >>> scale_intrinsics(K, 0.5, 0.5)[0, 2].item()
        159.5
    """
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K must have shape (..., 3, 3), got {tuple(K.shape)}")
    K = K.clone()
    K[..., 0, 0] = K[..., 0, 0] * scale_x
    K[..., 0, 1] = K[..., 0, 1] * scale_x
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * scale_x - 0.5
    K[..., 1, 1] = K[..., 1, 1] * scale_y
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * scale_y - 0.5
    return K


def resize_intrinsics(K: torch.Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> torch.Tensor:
    """Intrinsics after resizing an image from ``from_hw = (H, W)`` to ``to_hw``; see :func:`scale_intrinsics`."""
    return scale_intrinsics(K, to_hw[1] / from_hw[1], to_hw[0] / from_hw[0])


def resize_intrinsics_np(K: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """:func:`resize_intrinsics` on a (..., 3, 3) numpy array (float64 in and out), for readers and the ROS side."""
    return resize_intrinsics(torch.from_numpy(np.asarray(K, dtype=np.float64)), from_hw, to_hw).numpy()


def invert_intrinsics(K: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of upper-triangular pinhole intrinsics (with skew).

    Args:
        K: (..., 3, 3) with ``K[2] == [0, 0, 1]``.

    Returns:
        (..., 3, 3) ``K^-1``; exact and differentiable, without a general matrix inverse.
    """
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K must have shape (..., 3, 3), got {tuple(K.shape)}")
    fx, s, cx = K[..., 0, 0], K[..., 0, 1], K[..., 0, 2]
    fy, cy = K[..., 1, 1], K[..., 1, 2]
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [
        torch.stack([1 / fx, -s / (fx * fy), (s * cy - cx * fy) / (fx * fy)], dim=-1),
        torch.stack([zero, 1 / fy, -cy / fy], dim=-1),
        torch.stack([zero, zero, one], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def pixel_grid(height: int, width: int, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> torch.Tensor:
    """(H, W, 2) pixel coordinates ``(x, y)`` of every pixel centre."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device),
        torch.arange(width, dtype=dtype, device=device),
        indexing="ij",
    )
    return torch.stack([xs, ys], dim=-1)


def unproject_points(pixels: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Lift pixels with known depth (camera z) to 3D camera points.

    Args:
        pixels: (B, N, 2) pixel coordinates ``(x, y)``.
        depth: (B, N) depth along the optical axis (z), not ray length.
        K: (B, 3, 3) intrinsics.

    Returns:
        (B, N, 3) points in the camera frame.
    """
    dims = check_shape(pixels, "pixels", ("B", "N", 2))
    check_shape(depth, "depth", ("B", "N"), dims)
    check_shape(K, "K", ("B", 3, 3), dims)
    K_inv = invert_intrinsics(K)
    ones = torch.ones_like(pixels[..., :1])
    rays = torch.cat([pixels, ones], dim=-1) @ K_inv.transpose(1, 2)  # (B, N, 3) rays with z = 1
    return rays * depth.unsqueeze(-1)


def backproject_depth(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Back-project a depth map to a dense point map in the camera frame.

    Args:
        depth: (B, 1, H, W) depth (camera z).
        K: (B, 3, 3) intrinsics of that image.

    Returns:
        (B, 3, H, W) camera-frame points.

    Example:
        >>> K = torch.tensor([[[100.0, 0, 1.5], [0, 100.0, 1.5], [0, 0, 1]]])
        >>> backproject_depth(torch.full((1, 1, 4, 4), 2.0), K)[0, :, 0, 0]
        tensor([-0.0300, -0.0300,  2.0000])
    """
    dims = check_shape(depth, "depth", ("B", 1, "H", "W"))
    check_shape(K, "K", ("B", 3, 3), dims)
    B, _, H, W = depth.shape
    grid = pixel_grid(H, W, dtype=depth.dtype, device=depth.device).reshape(1, H * W, 2).expand(B, -1, -1)
    points = unproject_points(grid, depth.reshape(B, H * W), K)  # (B, H*W, 3)
    return points.transpose(1, 2).reshape(B, 3, H, W)


def project_points(points: torch.Tensor, K: torch.Tensor,
                   min_depth: float = MIN_DEPTH_EPS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project camera-frame points to pixels.

    Args:
        points: (B, N, 3) points in the camera frame.
        K: (B, 3, 3) intrinsics.
        min_depth: points with z below this are flagged in front=False; their division uses a clamped z so the
            result and its gradient stay finite.

    Returns:
        pixels: (B, N, 2) pixel coordinates.
        z: (B, N) depth of each point.
        in_front: (B, N) bool, z > min_depth.
    """
    dims = check_shape(points, "points", ("B", "N", 3))
    check_shape(K, "K", ("B", 3, 3), dims)
    z = points[..., 2]
    in_front = z > min_depth
    z_safe = torch.where(in_front, z, torch.full_like(z, min_depth))
    xy = points[..., :2] / z_safe.unsqueeze(-1)  # (B, N, 2) normalised image coordinates
    pixels = xy @ K[:, :2, :2].transpose(1, 2) + K[:, None, :2, 2]
    return pixels, z, in_front


def transform_points(T_a_b: torch.Tensor, points_b: torch.Tensor) -> torch.Tensor:
    """Map points from frame b to frame a.

    Args:
        T_a_b: (B, 4, 4) transform.
        points_b: (B, N, 3) points in frame b.

    Returns:
        (B, N, 3) the same points in frame a.
    """
    dims = check_shape(T_a_b, "T_a_b", ("B", 4, 4))
    check_shape(points_b, "points_b", ("B", "N", 3), dims)
    return points_b @ T_a_b[:, :3, :3].transpose(1, 2) + T_a_b[:, None, :3, 3]
