"""What a pose source returns: :class:`PoseResult`, the pose of each pair with its support and its diagnostics."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PoseResult:
    """Poses of a batch of pairs, how well they are supported, and which model produced them.

    Attributes:
        T_context_target: (B, 4, 4) the pose; the identity where not ``valid``.
        valid: (B,) bool, a finite pose was found.
        supported: (B,) bool, valid with at least ``min_inliers`` inliers (a PoseNet pose always is).
        inliers: (B, N) bool over the matches, or None for a source that uses none.
        num_inliers: (B,) int64 inlier count (0 without matches).
        pure_rotation: (B,) bool, the solver found a rotation-only motion (then t = 0).
        method: the model that produced the poses (``pnp``, ``essential``, ``posenet``), or for a fallback
            source the primary's; ``fallback_method`` is the fallback's.
        fallback_used: (B,) bool, the pose is the fallback's because the primary's was not supported.
        fallback_note: why a fallback pose is used, in words.
        failure: why a pose of this model can be invalid, in words.
        min_inliers: the support threshold behind ``supported``.
        depth_gradient: (B,) bool, the pair's warp may train the depth (False where the pose has no reliable
            translation, so the depth is not observable from it); None = every pair.
        translation_scale: (B,) the translation length per unit of the solved direction (the depth-derived scale of
            an anchored essential pose); None where the source has none.
    """

    T_context_target: torch.Tensor
    valid: torch.Tensor
    supported: torch.Tensor
    inliers: torch.Tensor | None
    num_inliers: torch.Tensor
    pure_rotation: torch.Tensor
    method: str
    failure: str = ""
    min_inliers: int = 0
    fallback_used: torch.Tensor | None = None
    fallback_method: str = ""
    fallback_note: str = ""
    depth_gradient: torch.Tensor | None = None
    translation_scale: torch.Tensor | None = None

    def __post_init__(self):
        if self.fallback_used is None:
            self.fallback_used = torch.zeros_like(self.valid)

    def supported_pose(self) -> torch.Tensor:
        """(B, 4, 4) ``T_context_target`` where supported, the identity elsewhere (what training warps with)."""
        identity = torch.eye(4, dtype=self.T_context_target.dtype, device=self.T_context_target.device)
        return torch.where(self.supported[:, None, None], self.T_context_target, identity.expand_as(
            self.T_context_target))

    def methods(self) -> list[str]:
        """Per pair, the model whose pose is used."""
        return [self.fallback_method if used else self.method for used in self.fallback_used.tolist()]

    def reasons(self) -> list[str]:
        """Per pair, why the pose is not (or not fully) trusted; "" when it is supported by its own model."""
        out = []
        for valid, supported, used, count in zip(self.valid.tolist(), self.supported.tolist(),
                                                 self.fallback_used.tolist(), self.num_inliers.tolist()):
            if not valid:
                out.append(self.failure or f"{self.method} found no pose")
            elif not supported:
                out.append(f"only {count} inliers (need {self.min_inliers})")
            else:
                out.append(self.fallback_note if used else "")
        return out


def invalid_result(problem_batch: int, num_matches: int, method: str, failure: str, min_inliers: int,
                   dtype: torch.dtype, device: torch.device) -> PoseResult:
    """Every pair invalid (e.g. fewer matches than the solver's minimal set): identity, no inliers."""
    false = torch.zeros(problem_batch, dtype=torch.bool, device=device)
    return PoseResult(torch.eye(4, dtype=dtype, device=device).repeat(problem_batch, 1, 1), false, false.clone(),
                      torch.zeros(problem_batch, num_matches, dtype=torch.bool, device=device),
                      torch.zeros(problem_batch, dtype=torch.int64, device=device), false.clone(), method, failure,
                      min_inliers)
