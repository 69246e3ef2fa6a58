"""Batched hypothesise-and-verify machinery shared by the robust solvers.

Every problem of the batch draws its hypotheses at once on the device: minimal sets are sampled with the Gumbel
top-k trick (weighted sampling without replacement, vectorised over batch x hypotheses), and hypotheses are scored
with the truncated quadratic MSAC cost, which ranks better than counting inliers at equal speed.
"""

from __future__ import annotations

import torch


def sample_minimal_sets(weights: torch.Tensor, num_hypotheses: int, sample_size: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``num_hypotheses`` index sets of ``sample_size`` distinct points per batch entry.

    Points are drawn without replacement with probability proportional to ``weights`` (zero-weight points are never
    drawn while enough positive ones exist).

    Args:
        weights: (B, N) non-negative sampling weights.
        num_hypotheses: H, sets per batch entry.
        sample_size: k, points per set (k <= N).
        generator: optional RNG for reproducible sampling (on the weights' device).

    Returns:
        (B, H, k) int64 indices into N.
    """
    B, N = weights.shape
    if sample_size > N:
        raise ValueError(f"sample_size={sample_size} exceeds the number of points N={N}")
    log_w = torch.log(weights.detach().clamp_min(0).to(torch.float32))  # -inf for zero weights
    uniform = torch.rand(B, num_hypotheses, N, generator=generator, device=weights.device, dtype=torch.float32)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
    keys = log_w.unsqueeze(1) + gumbel  # (B, H, N)
    # Zero-weight points get -inf keys; with fewer than k positive weights, ties among them are broken arbitrarily.
    keys = torch.nan_to_num(keys, neginf=-1e30)
    return keys.topk(sample_size, dim=-1).indices


def gather_sets(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather per-hypothesis minimal sets.

    Args:
        values: (B, N, ...) per-point values.
        index: (B, H, k) indices from :func:`sample_minimal_sets`.

    Returns:
        (B, H, k, ...) the selected values.
    """
    B, H, k = index.shape
    trailing = values.shape[2:]
    flat = index.reshape(B, H * k)
    expanded = flat.reshape(B, H * k, *([1] * len(trailing))).expand(B, H * k, *trailing)
    return torch.gather(values, 1, expanded).reshape(B, H, k, *trailing)


def msac_score(residuals_sq: torch.Tensor, threshold: float, valid: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated quadratic (MSAC) cost of each hypothesis; lower is better.

    Args:
        residuals_sq: (B, H, N) squared residuals of each point under each hypothesis (NaN counts as an outlier).
        threshold: inlier threshold on the (unsquared) residual.
        valid: (B, N) bool, points that take part (padding and zero-weight points excluded).

    Returns:
        cost: (B, H) sum over points of min(r^2, threshold^2); hypotheses with non-finite residuals everywhere get
            the worst cost.
        inliers: (B, H, N) bool, r < threshold.
    """
    th_sq = threshold * threshold
    r = torch.nan_to_num(residuals_sq.detach(), nan=float("inf"), posinf=float("inf"))
    inliers = r < th_sq
    if valid is not None:
        inliers = inliers & valid.unsqueeze(1)
        r = torch.where(valid.unsqueeze(1), r, torch.zeros_like(r))
    cost = r.clamp(max=th_sq).sum(-1)
    return cost, inliers


def select_best(cost: torch.Tensor, inliers: torch.Tensor, *hypotheses: torch.Tensor):
    """Pick the lowest-cost hypothesis per batch entry.

    Args:
        cost: (B, H) from :func:`msac_score`.
        inliers: (B, H, N).
        *hypotheses: tensors shaped (B, H, ...) holding each hypothesis' parameters.

    Returns:
        ``(best_index (B,), best_inliers (B, N), *best_hypotheses (B, ...))``.
    """
    best = cost.argmin(dim=1)  # (B,)
    batch = torch.arange(cost.shape[0], device=cost.device)
    return (best, inliers[batch, best], *(h[batch, best] for h in hypotheses))
