"""Weighted 3D-3D alignment (Kabsch / Umeyama), batched and differentiable."""

from __future__ import annotations

import torch

from ..validation import check_same_device_dtype, check_shape
from .result import PoseEstimate

# A point set whose second-largest centred singular value is below this fraction of the largest is treated as
# collinear: the rotation about that line is then unobservable.
COLLINEAR_RATIO = 1e-6


def _weighted_covariance(p1: torch.Tensor, p2: torch.Tensor, w: torch.Tensor, center: bool):
    w_sum = w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)  # (B, 1)
    wn = (w / w_sum).unsqueeze(-1)  # (B, N, 1)
    if center:
        mu1 = (wn * p1).sum(1)  # (B, 3)
        mu2 = (wn * p2).sum(1)
    else:
        mu1 = p1.new_zeros(p1.shape[0], 3)
        mu2 = p2.new_zeros(p2.shape[0], 3)
    q1, q2 = p1 - mu1[:, None], p2 - mu2[:, None]
    cov = (wn * q2).transpose(1, 2) @ q1  # (B, 3, 3) sum_i w_i q2_i q1_i^T
    return cov, mu1, mu2, q1, wn


def solve_procrustes(p1: torch.Tensor, p2: torch.Tensor, weights: torch.Tensor | None = None,
                     with_translation: bool = True, with_scale: bool = False,
                     min_points: int | None = None) -> PoseEstimate:
    """Weighted least-squares rigid (or similarity) transform with ``p2 ≈ s R p1 + t``.

    Solves Umeyama's problem with an SVD computed in float64 (cast back to the input dtype), the reflection fixed by
    the determinant sign. Degenerate batch entries (fewer than ``min_points`` positive weights, collinear points) give
    ``valid=False`` and identity/zero, and the SVD runs on a well-conditioned stand-in there so gradients stay finite.

    Args:
        p1: (B, N, 3) points in frame 1.
        p2: (B, N, 3) corresponding points in frame 2.
        weights: (B, N) non-negative weights; ones when omitted.
        with_translation: estimate t; when False the problem is a pure rotation between bearing vectors (t = 0).
        with_scale: also estimate a scale s (returned in ``info["scale"]``, applied inside ``t``'s model only).
        min_points: positive weights required; 3 with translation, 2 without.

    Returns:
        PoseEstimate ``(R (B,3,3), t (B,3))`` with ``valid`` (B,) and ``info["scale"]`` (B,).

    Example:
        >>> p1 = torch.rand(1, 10, 3, dtype=torch.float64)
        >>> R, t = solve_procrustes(p1, p1 + torch.tensor([1.0, 0, 0], dtype=torch.float64))
        >>> torch.allclose(t, torch.tensor([[1.0, 0, 0]], dtype=torch.float64))
        True
    """
    dims = check_shape(p1, "p1", ("B", "N", 3))
    check_shape(p2, "p2", ("B", "N", 3), dims)
    check_same_device_dtype(("p1", p1), ("p2", p2))
    if weights is None:
        weights = torch.ones_like(p1[..., 0])
    check_shape(weights, "weights", ("B", "N"), dims)
    min_points = (3 if with_translation else 2) if min_points is None else min_points

    dtype = p1.dtype
    p1d, p2d, wd = p1.double(), p2.double(), weights.double().clamp_min(0)
    cov, mu1, mu2, q1, wn = _weighted_covariance(p1d, p2d, wd, center=with_translation)

    enough = (wd > 0).sum(-1) >= min_points
    # Conditioning of the frame-1 point spread (collinear sets leave a rotation about the line undetermined).
    spread = (wn * q1).transpose(1, 2) @ q1  # (B, 3, 3)
    spread_eig = torch.linalg.eigvalsh(spread.detach())  # ascending
    not_collinear = spread_eig[:, 1] > COLLINEAR_RATIO * spread_eig[:, 2].clamp_min(1e-300)
    finite = torch.isfinite(cov).flatten(1).all(-1)
    valid = enough & not_collinear & finite & (spread_eig[:, 2] > 0)

    # A stand-in with distinct singular values keeps the SVD gradient (1 / (s_i^2 - s_j^2)) finite where invalid.
    stand_in = torch.diag(cov.new_tensor([3.0, 2.0, 1.0])).expand_as(cov)
    cov_safe = torch.where(valid[:, None, None], torch.nan_to_num(cov), stand_in)
    U, S, Vh = torch.linalg.svd(cov_safe)
    d = torch.sign(torch.det(U @ Vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1))
    R = U @ D @ Vh  # (B, 3, 3)

    if with_scale:
        var1 = (wn.squeeze(-1) * (q1 * q1).sum(-1)).sum(-1)  # (B,)
        scale = (S * D.diagonal(dim1=-2, dim2=-1)).sum(-1) / var1.clamp_min(1e-300)
    else:
        scale = torch.ones_like(d)
    t = mu2 - scale[:, None] * (R @ mu1.unsqueeze(-1)).squeeze(-1)

    eye = torch.eye(3, dtype=R.dtype, device=R.device).expand_as(R)
    R = torch.where(valid[:, None, None], R, eye)
    t = torch.where(valid[:, None], t, torch.zeros_like(t))
    scale = torch.where(valid, scale, torch.ones_like(scale))
    return PoseEstimate(R.to(dtype), t.to(dtype), valid, info={"scale": scale.to(dtype)})
