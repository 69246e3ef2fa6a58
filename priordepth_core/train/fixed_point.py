"""The fixed-point guard: can a pose source's photometric loss tell the true depth from a flat one?

Self-supervised depth learns only if, with the pose the source gives for a depth, the true depth warps better than a
wrong one. Under PnP every depth is a fixed point: PnP solves the pose that makes the given depth consistent, and on
our driving frames a flat depth with its PnP pose even scored lower than the true depth (docs/experiments.md). A
source whose pose does not follow the depth (the essential-anchored ``priordepth``, or a perfect PoseNet) ranks the
true depth first.

:func:`depth_hypothesis_losses` warps a batch's context frames with each depth hypothesis and the pose each source
gives *for that depth*, and reports the mean photometric error (SSIM + L1, MonoDepth2's ``alpha``) per source and
hypothesis; :func:`fixed_point_margin` is ``flat / true - 1`` (positive: the true depth wins).
``experiments/pose_diagnostics.py --fixed-point`` prints it; ``tests/train/test_fixed_point.py`` asserts it.
"""

from __future__ import annotations

from typing import Any

import torch

from ..geometry.warp import warp_image
from ..losses.photometric import reprojection_error
from ..pose import PoseProblem, PoseSourceSettings, build_pose_source
from .model import CACHED_MATCH_KEYS

# The sources compared by default; ``posenet`` stands for a perfect PoseNet (its prediction is the true pose).
DEFAULT_SOURCES = ("posenet", "pnp", "essential", "priordepth")


def depth_hypotheses(depth_gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """``true``: the ground truth (holes filled with its largest value); ``flat``: its median everywhere."""
    valid = depth_gt > 0
    filled = torch.where(valid, depth_gt, depth_gt.flatten(1).amax(dim=1)[:, None, None, None])
    median = torch.stack([d[v].median() for d, v in zip(depth_gt, valid)])
    return {"true": filled, "flat": median[:, None, None, None].expand_as(depth_gt).clone()}


@torch.no_grad()
def depth_hypothesis_losses(batch: dict[str, Any], sources: tuple[str, ...] = DEFAULT_SOURCES,
                            hypotheses: dict[str, torch.Tensor] | None = None,
                            settings: PoseSourceSettings | None = None,
                            generator_seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean photometric error of each source's warp under each depth hypothesis.

    Args:
        batch: a collated training batch with ``depth_gt`` (unless ``hypotheses`` is given), ``T_context_target``
            (ground truth: the perfect PoseNet) and the match cache's keys (data.match_cache: true); the matches are
            the frozen cache's, so every source solves from the same correspondences.
        sources: pose source names (:data:`priordepth_core.pose.POSE_SOURCE_NAMES`).
        hypotheses: name -> (B, 1, H, W) depth; default :func:`depth_hypotheses` of ``depth_gt``.
        settings: the sources' settings (RANSAC hypotheses, thresholds).

    Returns:
        ``{source: {hypothesis: error}}``.

    Raises:
        ValueError: the batch lacks the match cache's keys or ground truth.
    """
    missing = [key for key in (*CACHED_MATCH_KEYS, "T_context_target") if key not in batch]
    if missing:
        raise ValueError(f"the fixed-point check needs {', '.join(missing)} in the batch (a dataset with ground-truth "
                         "poses and data.match_cache: true)")
    if hypotheses is None:
        if "depth_gt" not in batch:
            raise ValueError("the fixed-point check needs depth_gt in the batch, or explicit hypotheses")
        hypotheses = depth_hypotheses(batch["depth_gt"])
    settings = settings or PoseSourceSettings(num_hypotheses=128, threshold_px=1.0, min_inliers=8,
                                              differentiable=False)
    image, context = batch["image"].double(), batch["context"].double()
    K = batch["K"].double()
    S = context.shape[1]
    results: dict[str, dict[str, float]] = {}
    for name in sources:
        source = build_pose_source(name, settings)
        results[name] = {}
        for hypothesis, depth in hypotheses.items():
            depth = depth.double()
            errors = []
            for s in range(S):
                problem = PoseProblem(K=K, depth_target=depth, x_target=batch["match_x_target"][:, s].double(),
                                      x_context=batch["match_x_context"][:, s].double(),
                                      weights=batch["match_weight"][:, s].double(),
                                      posenet_T_context_target=batch["T_context_target"][:, s].double(),
                                      essential_T_context_target=batch["essential_T_context_target"][:, s].double(),
                                      essential_status=batch["essential_status"][:, s],
                                      triangulated_depth_target=batch["match_depth_target"][:, s].double())
                result = source.solve(problem, torch.Generator().manual_seed(generator_seed))
                warped, valid = warp_image(context[:, s], depth, result.supported_pose(), K)
                error = reprojection_error(warped, image)
                mask = valid & result.supported[:, None, None, None]
                errors.append((error * mask).sum() / mask.sum().clamp(min=1))
            results[name][hypothesis] = float(torch.stack(errors).mean())
    return results


def fixed_point_margin(losses: dict[str, float]) -> float:
    """``flat / true - 1`` of one source's :func:`depth_hypothesis_losses` entry (> 0: the true depth warps better)."""
    return losses["flat"] / losses["true"] - 1.0
