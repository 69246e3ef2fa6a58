"""Two-view triangulation (midpoint method) and the metric scale of an essential-matrix translation.

The midpoint method solves, in closed form, the 2x2 least-squares problem for the depths along the two unit bearing
rays, ``d2 b2 - d1 R b1 ≈ t``, and returns the midpoint of the two closest ray points in frame 1. It is linear,
batched, differentiable and exact on noise-free data; its determinant is ``sin^2`` of the parallax angle, so rays with
no parallax are detected (and flagged) instead of divided by.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..camera import invert_intrinsics
from ..validation import check_same_device_dtype, check_shape

# sin^2 of the parallax angle below which a pair of rays counts as parallel (about 0.06 millidegrees): the depths are
# then computed with this value instead, finite but meaningless, and the point is flagged not in front.
MIN_SIN_SQ_PARALLAX = 1e-12
# Fewest usable points for a scale estimate.
MIN_SCALE_POINTS = 5
DEFAULT_MIN_PARALLAX_DEG = 1.0


class Triangulation(NamedTuple):
    """Triangulated points and their conditioning.

    Attributes:
        points: (B, N, 3) points in frame 1.
        parallax_deg: (B, N) angle between the two viewing rays (degrees).
        in_front: (B, N) bool, positive depth along both rays and a non-zero parallax.
        depth1: (B, N) depth (z) in frame 1.
        depth2: (B, N) depth (z) in frame 2.
    """

    points: torch.Tensor
    parallax_deg: torch.Tensor
    in_front: torch.Tensor
    depth1: torch.Tensor
    depth2: torch.Tensor


def bearings(x: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(B, N, 2) pixels and (B, 3, 3) intrinsics -> (B, N, 3) unit viewing rays in the camera frame."""
    rays = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1) @ invert_intrinsics(K).transpose(1, 2)
    return F.normalize(rays, dim=-1)


def triangulate_bearings(b1: torch.Tensor, b2: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> Triangulation:
    """Midpoint triangulation from unit bearings (no input checks; see :func:`triangulate_with_info`).

    Args:
        b1: (..., N, 3) unit rays in frame 1.
        b2: (..., N, 3) unit rays in frame 2.
        R: (..., 3, 3) and t: (..., 3), ``X2 = R @ X1 + t``.

    Returns:
        :class:`Triangulation`.
    """
    a = b1 @ R.transpose(-1, -2)  # (..., N, 3) ray 1 expressed in frame 2
    tt = t.unsqueeze(-2)  # (..., 1, 3)
    ab = (a * b2).sum(-1)  # (..., N) cos of the parallax
    at = (a * tt).sum(-1)
    bt = (b2 * tt).sum(-1)
    sin_sq = (1.0 - ab * ab).clamp_min(0.0)  # |a x b|^2 for unit a, b: the normal equations' determinant
    parallel = sin_sq < MIN_SIN_SQ_PARALLAX
    det = torch.where(parallel, torch.full_like(sin_sq, MIN_SIN_SQ_PARALLAX), sin_sq)
    # Normal equations of min |d2 b - d1 a - t|^2: [1, -ab; -ab, 1] [d1; d2] = [-at; bt].
    d1 = (-at + ab * bt) / det
    d2 = (bt - ab * at) / det
    p1 = d1.unsqueeze(-1) * b1  # closest point on ray 1, frame 1
    p2 = ((d2.unsqueeze(-1) * b2 - tt) @ R)  # closest point on ray 2, mapped back to frame 1 (R^T (X2 - t))
    points = 0.5 * (p1 + p2)
    cross = torch.linalg.cross(a, b2, dim=-1).norm(dim=-1)
    parallax = torch.rad2deg(torch.atan2(cross, ab))
    in_front = (d1 > 0) & (d2 > 0) & ~parallel
    depth2 = (points @ R.transpose(-1, -2) + tt)[..., 2]
    return Triangulation(points, parallax, in_front, points[..., 2], depth2)


def _check(x1, x2, K, R, t, K2):
    dims = check_shape(x1, "x1", ("B", "N", 2))
    check_shape(x2, "x2", ("B", "N", 2), dims)
    check_shape(K, "K", ("B", 3, 3), dims)
    check_shape(R, "R", ("B", 3, 3), dims)
    check_shape(t, "t", ("B", 3), dims)
    named = [("x1", x1), ("x2", x2), ("K", K), ("R", R), ("t", t)]
    if K2 is not None:
        check_shape(K2, "K2", ("B", 3, 3), dims)
        named.append(("K2", K2))
    check_same_device_dtype(*named)


def triangulate_with_info(x1: torch.Tensor, x2: torch.Tensor, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor,
                          K2: torch.Tensor | None = None) -> Triangulation:
    """Triangulate pixel correspondences by the midpoint method and report each point's conditioning.

    Args:
        x1: (B, N, 2) pixels in image 1.
        x2: (B, N, 2) pixels in image 2.
        K: (B, 3, 3) intrinsics of camera 1 (and of camera 2 unless ``K2`` is given).
        R: (B, 3, 3) rotation and t: (B, 3) translation with ``X2 = R @ X1 + t``; the points take t's scale.
        K2: (B, 3, 3) intrinsics of camera 2, optional.

    Returns:
        :class:`Triangulation` with points (B, N, 3) in frame 1, parallax_deg, in_front, depth1, depth2 (B, N).
        Rays without parallax (or t = 0) give finite, meaningless points flagged ``in_front=False``.

    Raises:
        ValueError: on wrong shapes, non-floating dtypes or mixed devices/dtypes.
    """
    _check(x1, x2, K, R, t, K2)
    return triangulate_bearings(bearings(x1, K), bearings(x2, K if K2 is None else K2), R, t)


def triangulate(x1: torch.Tensor, x2: torch.Tensor, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor,
                K2: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N, 3) points in frame 1 triangulated from pixel pairs; see :func:`triangulate_with_info`.

    Example:
        >>> K = torch.tensor([[[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]]], dtype=torch.float64)
        >>> R, t = torch.eye(3, dtype=torch.float64)[None], torch.tensor([[-1.0, 0, 0]], dtype=torch.float64)
        >>> x1 = torch.tensor([[[50.0, 50.0]]], dtype=torch.float64)
        >>> x2 = torch.tensor([[[40.0, 50.0]]], dtype=torch.float64)
        >>> round(triangulate(x1, x2, K, R, t)[0, 0, 2].item(), 9)
        10.0
    """
    return triangulate_with_info(x1, x2, K, R, t, K2).points


def weighted_median(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, N) values and non-negative weights -> (B,) lower weighted median (0 where all weights are zero).

    Gradients flow to the selected value (as for ``torch.median``), not to the weights.
    """
    order = values.detach().argsort(dim=-1)
    v = values.gather(-1, order)
    cw = weights.detach().gather(-1, order).cumsum(-1)  # (B, N)
    half = 0.5 * cw[..., -1:]
    index = (cw < half).sum(-1, keepdim=True).clamp(max=values.shape[-1] - 1)
    median = v.gather(-1, index).squeeze(-1)
    return torch.where(cw[..., -1] > 0, median, torch.zeros_like(median))


def recover_translation_scale(x1: torch.Tensor, x2: torch.Tensor, K: torch.Tensor, R: torch.Tensor,
                              t_unit: torch.Tensor, depth1: torch.Tensor | None = None,
                              depth_at_x1: torch.Tensor | None = None, weights: torch.Tensor | None = None,
                              min_parallax_deg: float = DEFAULT_MIN_PARALLAX_DEG, K2: torch.Tensor | None = None,
                              min_points: int = MIN_SCALE_POINTS) -> tuple[torch.Tensor, torch.Tensor]:
    """Metric scale ``s`` of a unit essential-matrix translation, so that ``s * t_unit`` agrees with a depth map.

    Points are triangulated with ``t_unit``; their depth then scales linearly with the true baseline, so the ratio of
    the given depth to the triangulated depth estimates ``s`` at every point. The weighted median of those ratios,
    over points in front of both cameras, with enough parallax, positive weight and a valid (positive, finite) given
    depth, is robust to outliers and to the depth map's errors.

    Args:
        x1: (B, N, 2) pixels in image 1 (inliers should carry the weight).
        x2: (B, N, 2) pixels in image 2.
        K: (B, 3, 3) intrinsics of camera 1 (and 2 unless ``K2``).
        R: (B, 3, 3) and t_unit: (B, 3), the essential-matrix pose (any norm; the scale is relative to it).
        depth1: (B, 1, H, W) depth map of image 1 (0 = invalid), sampled at x1 by nearest pixel; or
        depth_at_x1: (B, N) depth at x1 directly. Exactly one of the two.
        weights: (B, N) non-negative weights (e.g. weights times the inlier mask); ones when omitted.
        min_parallax_deg: points with less parallax are too poorly triangulated to take part.
        K2: (B, 3, 3) intrinsics of camera 2, optional.
        min_points: usable points required for a valid scale.

    Returns:
        scale: (B,) metric scale (1 where invalid; differentiable w.r.t. the depth and the points);
        valid: (B,) bool, enough usable points and a finite positive scale.

    Raises:
        ValueError: on wrong shapes, or unless exactly one of ``depth1`` / ``depth_at_x1`` is given.
    """
    _check(x1, x2, K, R, t_unit, K2)
    dims = {"B": x1.shape[0], "N": x1.shape[1]}
    if (depth1 is None) == (depth_at_x1 is None):
        raise ValueError("give exactly one of depth1 (B, 1, H, W) and depth_at_x1 (B, N)")
    if depth1 is not None:
        check_shape(depth1, "depth1", ("B", 1, "H", "W"), dims)
        H, W = depth1.shape[-2:]
        col = x1[..., 0].detach().round().clamp(0, W - 1).long()
        row = x1[..., 1].detach().round().clamp(0, H - 1).long()
        inside = (x1[..., 0] > -0.5) & (x1[..., 0] < W - 0.5) & (x1[..., 1] > -0.5) & (x1[..., 1] < H - 0.5)
        depth_at_x1 = depth1.flatten(1).gather(1, row * W + col) * inside  # (B, N)
    check_shape(depth_at_x1, "depth_at_x1", ("B", "N"), dims)
    if weights is None:
        weights = torch.ones_like(x1[..., 0])
    check_shape(weights, "weights", ("B", "N"), dims)

    tri = triangulate_with_info(x1, x2, K, R, t_unit, K2)
    finite = torch.isfinite(depth_at_x1) & torch.isfinite(tri.depth1) & torch.isfinite(weights)
    usable = (tri.in_front & (tri.parallax_deg >= min_parallax_deg) & (depth_at_x1 > 0) & (weights > 0) & finite
              & (tri.depth1 > 0))
    safe_tri = torch.where(usable, tri.depth1, torch.ones_like(tri.depth1))
    ratio = torch.where(usable, depth_at_x1, torch.ones_like(depth_at_x1)) / safe_tri  # (B, N)
    scale = weighted_median(ratio, torch.where(usable, weights, torch.zeros_like(weights)))
    valid = (usable.sum(-1) >= min_points) & torch.isfinite(scale) & (scale > 0) & (t_unit.norm(dim=-1) > 0)
    scale = torch.where(valid, scale, torch.ones_like(scale))
    return scale, valid


__all__ = ["Triangulation", "bearings", "recover_translation_scale", "triangulate", "triangulate_bearings",
           "triangulate_with_info", "weighted_median"]
