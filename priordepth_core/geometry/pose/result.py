"""The value every pose solver returns: a tuple that unpacks as ``R, t`` (or ``R, t, inliers``) and carries flags."""

from __future__ import annotations

import torch


class PoseEstimate(tuple):
    """Result of a batched pose solve.

    Unpacks as ``R, t = est`` for the direct solvers and ``R, t, inliers = est`` for the robust ones, so call sites
    read like OpenCV's; the validity flag travels with it instead of an exception, because degenerate pairs inside a
    training batch must not abort the step.

    Attributes:
        R: (B, 3, 3) rotation.
        t: (B, 3) translation (``X2 = R @ X1 + t``).
        valid: (B,) bool; False where the input was degenerate (too few or collinear points, zero weights, pure
            rotation for the essential matrix, ...). R and t are then the identity / zero and finite, with one
            exception: a pure rotation found by the essential solver keeps its accurate rotation-only R (t = 0) and
            sets ``info["rotation_valid"]``.
        inliers: (B, N) bool or None; present for robust solvers.
        info: dict of extra per-batch tensors a solver chooses to report (e.g. ``"pure_rotation"``, ``"num_inliers"``).
    """

    R: torch.Tensor
    t: torch.Tensor
    valid: torch.Tensor
    inliers: torch.Tensor | None
    info: dict

    def __new__(cls, R: torch.Tensor, t: torch.Tensor, valid: torch.Tensor, inliers: torch.Tensor | None = None,
                info: dict | None = None) -> PoseEstimate:
        items = (R, t) if inliers is None else (R, t, inliers)
        obj = super().__new__(cls, items)
        obj.R, obj.t, obj.valid, obj.inliers = R, t, valid, inliers
        obj.info = {} if info is None else info
        return obj

    def __getnewargs__(self):
        return (self.R, self.t, self.valid, self.inliers, self.info)

    def transform(self) -> torch.Tensor:
        """(B, 4, 4) homogeneous ``T_2_1`` mapping frame-1 points to frame 2."""
        B = self.R.shape[0]
        T = torch.eye(4, dtype=self.R.dtype, device=self.R.device).repeat(B, 1, 1)
        T[:, :3, :3] = self.R
        T[:, :3, 3] = self.t
        return T
