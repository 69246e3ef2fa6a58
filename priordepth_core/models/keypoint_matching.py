"""Batched descriptor matching between the keypoints of two images, and the weighted correspondences it yields.

Nearest neighbours in L2 distance of unit descriptors, optionally mutual, with Lowe's ratio test and a distance
cut. Each match carries a differentiable confidence, the dual-softmax probability of the pair (as in LoFTR):
``softmax_over_image2(s / T)[i, j] * softmax_over_image1(s / T)[i, j]`` with ``s`` the cosine similarity, high only
when each keypoint is the other's clear best candidate. The pose solvers take the pairs with weights
``confidence * score1 * score2``.
"""

from __future__ import annotations

import torch

from ..geometry.validation import check_shape

# Smallest squared distance inside the square root: keeps the gradient finite for identical descriptors.
DISTANCE_EPS = 1e-12
# L2 distance between unit vectors never exceeds 2; reported where a keypoint has no candidate at all.
MAX_UNIT_DISTANCE = 2.0


def match_descriptors(desc1: torch.Tensor, desc2: torch.Tensor, valid1: torch.Tensor | None = None,
                      valid2: torch.Tensor | None = None, mutual: bool = True, ratio: float | None = 0.8,
                      max_distance: float | None = None, temperature: float = 0.1) -> dict[str, torch.Tensor]:
    """Match every keypoint of image 1 to its nearest neighbour in image 2.

    Args:
        desc1: (B, K1, D) unit-norm descriptors of image 1.
        desc2: (B, K2, D) unit-norm descriptors of image 2.
        valid1: (B, K1) bool, keypoints that exist (padding is False); all True when omitted.
        valid2: (B, K2) bool, likewise for image 2.
        mutual: keep a pair only if each is the other's nearest neighbour.
        ratio: Lowe's ratio test, nearest / second-nearest distance below ``ratio``; None disables. A keypoint with
            a single candidate passes.
        max_distance: keep pairs at most this far apart (L2, in [0, 2]); None disables.
        temperature: of the dual softmax giving the confidence.

    Returns:
        ``index`` (B, K1) int64, the matched keypoint of image 2 or -1; ``valid`` (B, K1) bool; ``distance``
        (B, K1) L2 distance to the nearest valid neighbour (2 where there is none); ``confidence`` (B, K1) in
        [0, 1], differentiable in the descriptors, 0 where not valid.

    Example:
        >>> d = torch.nn.functional.normalize(torch.randn(1, 5, 8), dim=-1)
        >>> match_descriptors(d, d.flip(1))["index"]
        tensor([[4, 3, 2, 1, 0]])
    """
    dims = check_shape(desc1, "desc1", ("B", "K1", "D"))
    check_shape(desc2, "desc2", ("B", "K2", "D"), dims)
    B, K1, K2 = dims["B"], dims["K1"], dims["K2"]
    valid1 = _check_valid(valid1, "valid1", (B, K1), desc1.device)
    valid2 = _check_valid(valid2, "valid2", (B, K2), desc2.device)
    if ratio is not None and not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1] or None, got {ratio}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")

    similarity = desc1 @ desc2.transpose(1, 2)  # (B, K1, K2)
    distance = torch.sqrt((2.0 - 2.0 * similarity).clamp(min=DISTANCE_EPS))  # (B, K1, K2)
    pair_valid = valid1.unsqueeze(2) & valid2.unsqueeze(1)  # (B, K1, K2)
    far = torch.full_like(distance, float("inf"))
    masked = torch.where(pair_valid, distance, far)

    num_nearest = min(2, K2)
    nearest = torch.topk(masked, num_nearest, dim=2, largest=False)  # over image 2
    index = nearest.indices[..., 0]  # (B, K1)
    best = nearest.values[..., 0]  # (B, K1)
    has_candidate = torch.isfinite(best)
    matched = has_candidate
    if mutual:
        reverse = masked.argmin(dim=1)  # (B, K2): nearest keypoint of image 1 for each of image 2
        matched = matched & (torch.gather(reverse, 1, index) == torch.arange(K1, device=index.device))
    if ratio is not None and num_nearest == 2:
        second = nearest.values[..., 1]
        # A lone candidate (second = inf) passes; ratio compared without division to stay finite.
        matched = matched & (best < ratio * second)
    if max_distance is not None:
        matched = matched & (best <= max_distance)

    logits = (similarity / temperature).masked_fill(~pair_valid, torch.finfo(similarity.dtype).min)
    dual_softmax = torch.softmax(logits, dim=2) * torch.softmax(logits, dim=1)  # (B, K1, K2)
    confidence = torch.gather(dual_softmax, 2, index.unsqueeze(2)).squeeze(2)
    zero = torch.zeros((), dtype=confidence.dtype, device=confidence.device)
    return {
        "index": torch.where(matched, index, torch.full_like(index, -1)),
        "valid": matched,
        "distance": torch.where(has_candidate, best, torch.full_like(best, MAX_UNIT_DISTANCE)),
        "confidence": torch.where(matched, confidence, zero),
    }


def _check_valid(valid: torch.Tensor | None, name: str, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    if valid is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if not isinstance(valid, torch.Tensor) or valid.dtype != torch.bool or tuple(valid.shape) != shape:
        got = tuple(valid.shape) if isinstance(valid, torch.Tensor) else type(valid).__name__
        raise ValueError(f"{name} must be a bool tensor of shape {shape}, got {got}")
    return valid


def gather_matches(kp1: dict[str, torch.Tensor], kp2: dict[str, torch.Tensor],
                   match: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Correspondences for the pose solvers from two :func:`select_keypoints` results and their matches.

    Args:
        kp1, kp2: ``keypoints`` (B, K1|K2, 2) and ``scores`` (B, K1|K2) of images 1 and 2.
        match: :func:`match_descriptors` result for ``kp1`` -> ``kp2``.

    Returns:
        x1: (B, K1, 2) keypoints of image 1.
        x2: (B, K1, 2) matched keypoints of image 2; for unmatched rows a copy of ``x1`` (finite, weight 0).
        weights: (B, K1) ``confidence * score1 * score2``, 0 where unmatched; differentiable.
    """
    dims = check_shape(kp1["keypoints"], "kp1['keypoints']", ("B", "K1", 2))
    check_shape(kp2["keypoints"], "kp2['keypoints']", ("B", "K2", 2), dims)
    check_shape(kp1["scores"], "kp1['scores']", ("B", "K1"), dims)
    check_shape(kp2["scores"], "kp2['scores']", ("B", "K2"), dims)
    check_shape(match["index"], "match['index']", ("B", "K1"), dims, floating=False)
    valid = match["valid"]
    index = match["index"].clamp(min=0)  # (B, K1)
    x1 = kp1["keypoints"]
    gathered = torch.gather(kp2["keypoints"], 1, index.unsqueeze(-1).expand(-1, -1, 2))  # (B, K1, 2)
    x2 = torch.where(valid.unsqueeze(-1), gathered, x1)
    score2 = torch.gather(kp2["scores"], 1, index)  # (B, K1)
    weights = match["confidence"] * kp1["scores"] * score2
    weights = torch.where(valid, weights, torch.zeros_like(weights))
    return x1, x2, weights
