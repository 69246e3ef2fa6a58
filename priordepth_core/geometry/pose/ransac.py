"""Batched hypothesise-and-verify machinery shared by the robust solvers.

Every problem of the batch draws its hypotheses at once on the device: minimal sets are sampled by weight, vectorised
over batch x hypotheses, and hypotheses are scored with the truncated quadratic MSAC cost, which ranks better than
counting inliers at equal speed.
"""

from __future__ import annotations

import math

import torch

# Rounds of cheaply redrawing the sets that repeat a point before the remaining ones are drawn exactly.
CHEAP_REDRAWS = 2


def sample_minimal_sets(weights: torch.Tensor, num_hypotheses: int, sample_size: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``num_hypotheses`` index sets of ``sample_size`` distinct points per batch entry.

    Points are drawn with probability proportional to ``weights`` (zero-weight points are never drawn while a positive
    one exists; an all-zero row samples uniformly, and its solver flags the result invalid anyway).

    Sets are drawn with replacement by inverse CDF and the few that repeat a point are redrawn: measured here at batch
    64 x 128 hypotheses x 8 of 500 points this costs ~3 ms against ~80 ms for exact sampling without replacement
    (Gumbel top-k or ``torch.multinomial(replacement=False)``), which scale with the number of points, not the set
    size. Sets still repeating after a few rounds are drawn exactly, so all sets are distinct whenever at least
    ``sample_size`` points carry weight.

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
    probs = torch.nan_to_num(weights.detach().to(torch.float32), nan=0.0).clamp_min(0)
    probs = torch.where(probs.sum(-1, keepdim=True) > 0, probs, torch.ones_like(probs))
    cdf = torch.cumsum(probs, dim=-1)
    cdf = cdf / cdf[:, -1:]

    def draw(rows: torch.Tensor, sets: int) -> torch.Tensor:
        """Inverse-CDF draws (zero-weight points own an empty interval): (M,) batch rows -> (M, sets * k)."""
        uniform = torch.rand(len(rows), sets * sample_size, generator=generator, device=cdf.device)
        return torch.searchsorted(cdf[rows], uniform, right=True).clamp_max(N - 1)

    def with_repeats(index: torch.Tensor) -> torch.Tensor:
        ordered = index.sort(dim=-1).values
        return (ordered[..., 1:] == ordered[..., :-1]).any(dim=-1)

    index = draw(torch.arange(B, device=cdf.device), num_hypotheses).view(B, num_hypotheses, sample_size)
    for _ in range(CHEAP_REDRAWS):
        batch_index, hypothesis_index = with_repeats(index).nonzero(as_tuple=True)
        if len(batch_index) == 0:
            return index
        index[batch_index, hypothesis_index] = draw(batch_index, 1)
    batch_index, hypothesis_index = with_repeats(index).nonzero(as_tuple=True)
    if len(batch_index):
        # The few sets still repeating (concentrated weights) are drawn exactly without replacement (Gumbel top-k).
        rows = probs[batch_index]  # (M, N)
        uniform = torch.rand(rows.shape, generator=generator, device=rows.device, dtype=torch.float32)
        keys = torch.log(rows) - torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
        keys = torch.nan_to_num(keys, neginf=-1e30)  # zero weights last; ties only if < k points carry weight
        index[batch_index, hypothesis_index] = keys.topk(sample_size, dim=-1).indices
    return index


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


def required_hypotheses(inlier_ratio: torch.Tensor, sample_size: int, confidence: float) -> torch.Tensor:
    """Hypotheses needed to draw one all-inlier minimal set with probability ``confidence`` (RANSAC's stopping rule).

    Args:
        inlier_ratio: (B,) estimated inlier fraction (of the best hypothesis so far).
        sample_size: k, points per minimal set.
        confidence: e.g. 0.999.

    Returns:
        (B,) float ``log(1 - confidence) / log(1 - inlier_ratio^k)``; inf where the ratio is 0.
    """
    p_good = inlier_ratio.double().clamp(0.0, 1.0) ** sample_size
    miss = torch.log1p(-p_good.clamp(max=1.0 - 1e-12))
    return torch.where(p_good > 0, math.log(1.0 - confidence) / miss, torch.full_like(p_good, float("inf")))
