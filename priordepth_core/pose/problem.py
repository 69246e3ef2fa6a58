"""What a pose source is given (:class:`PoseProblem`) and how it is set up (:class:`PoseSourceSettings`).

One convention for training and inference: the *target* is the frame whose depth is known (training: the target
image; the Pipeline: the reference frame), the *context* the other one (training: a context image; the Pipeline: the
current frame). A source finds ``T_context_target``, mapping target-camera points into the context camera (the
Pipeline's ``T_curr_ref``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import torch

from ..geometry.camera import unproject_points
from ..losses.sparse_prior import sample_depth_at


class EssentialStatus(IntEnum):
    """What a cached essential-matrix solve of a pair gives (:mod:`priordepth_core.data.match_cache`).

    ``OK``: rotation and translation direction. ``LOW_PARALLAX``: both, but the median rotation-compensated parallax
    is under a pixel, so the direction is uncertain. ``ROTATION_ONLY``: the rotation model won (t = 0).
    ``FAILED``: no pose.
    """

    OK = 0
    LOW_PARALLAX = 1
    ROTATION_ONLY = 2
    FAILED = 3


@dataclass(frozen=True)
class PoseSourceSettings:
    """Options every source is built with; the trainer fills them from its ``pose`` config, the Pipeline from its
    ``PipelineConfig``.

    Attributes:
        num_hypotheses: RANSAC minimal sets per pair.
        threshold_px: inlier threshold in pixels (at the network input resolution).
        min_inliers: a pose with fewer inliers is not ``supported`` (training masks its pair; the Pipeline reports
            it degraded; ``pnp_essential`` tries the essential matrix).
        differentiable: PnP ends with the differentiable weighted refit, so gradients reach depth, keypoints and
            weights (training); without it the locally optimised hypothesis is final (inference, nothing is
            back-propagated).
        detach_depth: PnP lifts the target keypoints with a detached depth (the pose then carries the depth's
            values but no gradient into it).
        pnp_dtype: dtype PnP solves in; None = the problem's. The Pipeline solves PnP in float32 (its keypoints
            carry the network's float32 precision) and the essential matrix in the problem's float64.
    """

    num_hypotheses: int = 128
    threshold_px: float = 1.0
    min_inliers: int = 20
    differentiable: bool = True
    detach_depth: bool = False
    pnp_dtype: torch.dtype | None = None


@dataclass
class PoseProblem:
    """One batch of frame pairs.

    Sources that solve from matches need ``x_target``, ``x_context``, ``weights`` and depth (``points_target`` or
    ``depth_target``); the PoseNet source needs ``posenet_T_context_target``.

    Attributes:
        K: (B, 3, 3) intrinsics of both frames.
        x_target: (B, N, 2) matched target pixels.
        x_context: (B, N, 2) the matched context pixels.
        weights: (B, N) non-negative match weights (0 = no match).
        depth_target: (B, 1, H, W) depth map of the target frame.
        points_target: (B, N, 3) ``x_target`` lifted into the target camera; lifted from ``depth_target`` (bilinear)
            when None.
        init_T_context_target: (B, 4, 4) a motion prior a solver may start from (PoseNet, constant velocity).
        posenet_T_context_target: (B, 4, 4) the PoseNet's prediction.
        essential_T_context_target: (B, 4, 4) a precomputed essential pose with unit-length translation (the frozen
            match cache); its ``x_target``/``x_context``/``weights`` are the solve's inliers.
        essential_status: (B,) int64 :class:`EssentialStatus` of that solve.
        triangulated_depth_target: (B, N) the inliers' target depth triangulated with that pose (unit baseline).
    """

    K: torch.Tensor
    x_target: torch.Tensor | None = None
    x_context: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    depth_target: torch.Tensor | None = None
    points_target: torch.Tensor | None = None
    init_T_context_target: torch.Tensor | None = None
    posenet_T_context_target: torch.Tensor | None = None
    essential_T_context_target: torch.Tensor | None = None
    essential_status: torch.Tensor | None = None
    triangulated_depth_target: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.K.shape[0]

    @property
    def num_matches(self) -> int:
        return 0 if self.x_target is None else self.x_target.shape[1]

    def require(self, source: str, *names: str) -> None:
        """Raise ValueError naming the inputs ``source`` needs but was not given."""
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise ValueError(f"pose source {source!r} needs {', '.join(missing)} in its PoseProblem")

    def require_depth(self, source: str) -> None:
        if self.points_target is None and self.depth_target is None:
            raise ValueError(f"pose source {source!r} needs points_target or depth_target in its PoseProblem")

    def target_points(self, detach_depth: bool = False) -> torch.Tensor:
        """(B, N, 3) the target keypoints in the target camera."""
        if self.points_target is not None:
            return self.points_target.detach() if detach_depth else self.points_target
        depth = self.depth_target.detach() if detach_depth else self.depth_target
        return unproject_points(self.x_target, sample_depth_at(depth, self.x_target), self.K)

    def init_rotation_translation(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        T = self.init_T_context_target
        return None if T is None else (T[:, :3, :3], T[:, :3, 3])
