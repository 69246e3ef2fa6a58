"""Sparse spatial-temporal depth prior: predicted depth at keypoints against their triangulated depth."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry.validation import check_shape
from ..geometry.warp import pixels_to_grid


def sample_depth_at(depth: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample a depth map at sub-pixel positions (pixel centres at integers).

    Points outside the image take the border value (``padding_mode="border"``); mask them by position if needed.

    Args:
        depth: (B, 1, H, W) depth map.
        pixels: (B, N, 2) pixel coordinates ``(x, y)``; normalised as ``(2x + 1) / W - 1`` for
            ``align_corners=False``.

    Returns:
        (B, N) sampled depth, differentiable with respect to ``depth`` and ``pixels``.

    Example:
        >>> depth = torch.arange(6.0).view(1, 1, 2, 3)
        >>> sample_depth_at(depth, torch.tensor([[[1.0, 1.0], [0.5, 0.0]]]))
        tensor([[4.0000, 0.5000]])
    """
    dims = check_shape(depth, "depth", ("B", 1, "H", "W"))
    check_shape(pixels, "pixels", ("B", "N", 2), dims)
    H, W = depth.shape[-2:]
    grid = pixels_to_grid(pixels.to(depth.dtype), H, W).unsqueeze(1)  # (B, 1, N, 2)
    sampled = F.grid_sample(depth, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[:, 0, 0, :]  # (B, N)


class SparseDepthPriorLoss(nn.Module):
    """Robust log-depth L1 between predicted and triangulated keypoint depths, on well-conditioned points only.

    A point enters when its parallax angle is at least ``min_parallax_deg`` (below it the triangulated depth is
    dominated by keypoint noise), both depths are finite and positive (the caller's ``valid`` adds cheirality in both
    cameras), and, if set, the triangulated depth is at most ``max_depth``.

    Args:
        min_parallax_deg: smallest parallax angle between the two viewing rays, degrees.
        max_depth: drop triangulated depths beyond this (None keeps all).
        detach_target: treat the triangulated depth as a constant target (default), so the prior only pulls the
            depth network and does not move the pose or keypoints that produced the triangulation.
    """

    def __init__(self, min_parallax_deg: float = 1.0, max_depth: float | None = None, detach_target: bool = True):
        super().__init__()
        if min_parallax_deg < 0:
            raise ValueError(f"min_parallax_deg must be non-negative, got {min_parallax_deg}")
        if max_depth is not None and max_depth <= 0:
            raise ValueError(f"max_depth must be positive, got {max_depth}")
        self.min_parallax_deg = min_parallax_deg
        self.max_depth = max_depth
        self.detach_target = detach_target

    def forward(self, depth_pred_at_kp: torch.Tensor, depth_triangulated: torch.Tensor, parallax_deg: torch.Tensor,
                weights: torch.Tensor | None = None,
                valid: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted mean of ``|log d_pred - log d_tri|`` over qualifying points.

        Args:
            depth_pred_at_kp: (B, N) predicted depth at the keypoints (see :func:`sample_depth_at`).
            depth_triangulated: (B, N) triangulated depth in the same camera and scale.
            parallax_deg: (B, N) parallax angle of each triangulation, degrees.
            weights: (B, N) non-negative confidence weights (e.g. match scores); None = 1.
            valid: (B, N) bool, e.g. the triangulation's in-front-of-both-cameras flag; None = all.

        Returns:
            loss: scalar; exactly 0 with finite (zero) gradients when no point qualifies.
            metrics: ``sparse_prior/loss``, ``sparse_prior/used_points`` (count), ``sparse_prior/used_fraction``,
                ``sparse_prior/median_abs_log_error`` (0 when none used).
        """
        dims = check_shape(depth_pred_at_kp, "depth_pred_at_kp", ("B", "N"))
        check_shape(depth_triangulated, "depth_triangulated", ("B", "N"), dims)
        check_shape(parallax_deg, "parallax_deg", ("B", "N"), dims)
        if weights is not None:
            check_shape(weights, "weights", ("B", "N"), dims)
        if valid is not None:
            check_shape(valid, "valid", ("B", "N"), dims, floating=False)

        target = depth_triangulated.detach() if self.detach_target else depth_triangulated
        usable = (
            torch.isfinite(depth_pred_at_kp) & (depth_pred_at_kp > 0)
            & torch.isfinite(target) & (target > 0)
            & torch.isfinite(parallax_deg) & (parallax_deg >= self.min_parallax_deg)
        )
        if self.max_depth is not None:
            usable = usable & (target <= self.max_depth)
        if valid is not None:
            usable = usable & valid.bool()
        weight = torch.ones_like(depth_pred_at_kp) if weights is None else weights.to(depth_pred_at_kp.dtype)
        usable = usable & torch.isfinite(weight) & (weight > 0)

        # Unusable entries are replaced by 1 before the log, so neither the value nor its gradient can be NaN there.
        one = torch.ones_like(depth_pred_at_kp)
        log_error = (torch.log(torch.where(usable, depth_pred_at_kp, one))
                     - torch.log(torch.where(usable, target.to(depth_pred_at_kp.dtype), one))).abs()
        weight = torch.where(usable, weight, torch.zeros_like(weight))
        loss = (weight * log_error).sum() / weight.sum().clamp(min=torch.finfo(weight.dtype).tiny)
        used = usable.sum()
        # nanmedian over the masked errors avoids a host sync; all-NaN (nothing used) gives NaN, reported as 0.
        median = torch.where(usable, log_error, torch.full_like(log_error, float("nan"))).nanmedian().nan_to_num(0.0)
        metrics = {
            "sparse_prior/loss": loss.detach(),
            "sparse_prior/used_points": used,
            "sparse_prior/used_fraction": used / max(usable.numel(), 1),
            "sparse_prior/median_abs_log_error": median.detach(),
        }
        return loss, metrics
