"""Frame-to-frame pose from matched keypoints through a pose source of :mod:`priordepth_core.pose` (by default
``pnp_essential``: robust PnP on the reference frame's lifted keypoints, the essential matrix with the translation
length from depth as its fallback), and the pose's covariance from the reprojection residuals.

Inference runs one pair at a time, so the batched sources run at batch 1, without the differentiable final step
(``differentiable=False``: nothing is back-propagated here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..pose import PoseProblem, PoseSource

# Reprojection noise never assumed smaller than this (pixels at the network input): keypoints are quantised by the
# network's cell regression, and exact synthetic data must not produce a zero covariance.
MIN_SIGMA_PX = 0.25


@dataclass
class RelativePose:
    """Pose of the current camera relative to the reference frame, and how well it is supported.

    Attributes:
        T_curr_ref: (4, 4) float64 mapping reference-camera points into the current camera (identity if invalid).
        valid: a pose was found.
        method: the model whose pose this is ("pnp", "essential", ...) or "none".
        inliers: (M,) bool over the matches.
        num_inliers: inlier count.
        covariance: (6, 6) of the left perturbation ``(v, omega)`` of ``T_curr_ref`` (translation first), in the
            current camera frame; large where invalid.
        rms_px: RMS reprojection error of the inliers (network pixels), inf where invalid.
        parallax_px: median displacement of the inliers after removing the rotation (network pixels).
        rotation_deg: rotation angle of ``T_curr_ref``.
        median_residual_px: median reprojection error of the inliers under the full pose (network pixels); the
            keypoints' noise level, against which ``parallax_px`` is judged.
        fallback_note: why the pose source's fallback gave this pose (the Pipeline reports it degraded); "" when
            the primary's pose is used.
    """

    T_curr_ref: np.ndarray
    valid: bool
    method: str
    inliers: np.ndarray
    num_inliers: int
    covariance: np.ndarray
    rms_px: float = float("inf")
    parallax_px: float = 0.0
    rotation_deg: float = 0.0
    median_residual_px: float = float("inf")
    fallback_note: str = ""


def invalid_pose(num_matches: int, variance: float) -> RelativePose:
    return RelativePose(np.eye(4), False, "none", np.zeros(num_matches, dtype=bool), 0, np.eye(6) * variance)


def _project(points: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = points[:, 2]
    safe = np.where(np.abs(z) > 1e-9, z, 1e-9)
    pixels = (points @ K.T)[:, :2] / safe[:, None]
    return pixels, z > 1e-9


def reprojection_covariance(R: np.ndarray, t: np.ndarray, X: np.ndarray, x: np.ndarray, K: np.ndarray,
                            min_sigma_px: float = MIN_SIGMA_PX) -> tuple[np.ndarray, float, float]:
    """Gauss-Newton covariance of a PnP pose from its inlier residuals.

    ``sigma^2 (J^T J)^-1`` with J the (2P, 6) Jacobian of the pixel residuals with respect to the left update
    ``(v, omega)`` of ``X_curr = R X + t`` and ``sigma^2`` the residual variance (2P - 6 degrees of freedom),
    floored at ``min_sigma_px``.

    Args:
        R: (3, 3), t: (3,) the pose; X: (P, 3) reference points; x: (P, 2) their pixels; K: (3, 3).

    Returns:
        (6, 6) covariance (translation first), the RMS and the median residual length in pixels.
    """
    p = X @ R.T + t  # (P, 3) in the current camera
    pixels, in_front = _project(p, K)
    r = (pixels - x)[in_front]
    p = p[in_front]
    if len(p) < 3:
        return np.eye(6) * 1e6, float("inf"), float("inf")
    fx, skew, fy = K[0, 0], K[0, 1], K[1, 1]
    iz = 1.0 / p[:, 2]
    nu = fx * p[:, 0] + skew * p[:, 1]
    J_p = np.zeros((len(p), 2, 3))
    J_p[:, 0] = np.stack([fx * iz, skew * iz, -nu * iz * iz], axis=1)
    J_p[:, 1] = np.stack([np.zeros_like(iz), fy * iz, -fy * p[:, 1] * iz * iz], axis=1)
    # d/d omega of J_p (omega x p) = J_p [p]x^T = -J_p [p]x, i.e. rows p x j for each row j of J_p.
    J_omega = np.cross(p[:, None, :], J_p)
    J = np.concatenate([J_p, J_omega], axis=2).reshape(-1, 6)
    dof = max(r.size - 6, 1)
    rms = float(np.sqrt(np.mean(np.sum(r * r, axis=1))))
    sigma_sq = max(float(np.sum(r * r)) / dof, min_sigma_px**2)
    information = J.T @ J
    # A ridge relative to the information's scale keeps near-degenerate geometry (few, clustered points) finite.
    ridge = 1e-9 * np.trace(information) + 1e-12
    median = float(np.median(np.linalg.norm(r, axis=1)))
    return sigma_sq * np.linalg.inv(information + ridge * np.eye(6)), rms, median


def rotation_compensated_parallax(R: np.ndarray, x_ref: np.ndarray, x_curr: np.ndarray, K: np.ndarray) -> float:
    """Median pixel distance between the current keypoints and the reference ones moved by the rotation alone.

    Small when the camera only rotated (or stood still): then the scene's depth is not observed by the motion.
    """
    if len(x_ref) == 0:
        return 0.0
    rays = np.concatenate([x_ref, np.ones((len(x_ref), 1))], axis=1) @ np.linalg.inv(K).T
    rotated, in_front = _project(rays @ R.T, K)
    if not np.any(in_front):
        return 0.0
    return float(np.median(np.linalg.norm(rotated[in_front] - x_curr[in_front], axis=1)))


def _rotation_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


def _finish(R: np.ndarray, t: np.ndarray, inliers: np.ndarray, method: str, X: np.ndarray, x_ref: np.ndarray,
            x_curr: np.ndarray, K: np.ndarray) -> RelativePose:
    covariance, rms, median = reprojection_covariance(R, t, X[inliers], x_curr[inliers], K)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    parallax = rotation_compensated_parallax(R, x_ref[inliers], x_curr[inliers], K)
    finite = np.isfinite(T).all() and np.isfinite(covariance).all()
    if not finite:
        return invalid_pose(len(inliers), 1e6)
    return RelativePose(T, True, method, inliers, int(inliers.sum()), covariance, rms, parallax, _rotation_deg(R),
                        median)


def estimate_relative_pose(source: PoseSource, points_ref: np.ndarray, x_ref: np.ndarray, x_curr: np.ndarray,
                           weights: np.ndarray, K: np.ndarray, generator: torch.Generator,
                           init_T_curr_ref: np.ndarray | None = None, lost_variance: float = 1e6) -> RelativePose:
    """Pose of the current camera from matched keypoints of a reference frame lifted to 3D with its depth.

    The reference is the pose source's target frame and the current frame its context, so the source's
    ``T_context_target`` is ``T_curr_ref``. With the Pipeline's default ``pnp_essential``: PnP (6-point MSAC, local
    optimisation) on ``points_ref`` -> ``x_curr``, and where it finds fewer than ``min_inliers`` inliers the essential
    matrix between ``x_ref`` and ``x_curr`` with the translation length from the reference depth
    (``points_ref[:, 2]``), the better supported pose kept.

    Args:
        source: the pose source (:func:`priordepth_core.pose.build_pose_source`).
        points_ref: (M, 3) matched reference keypoints in the reference camera.
        x_ref: (M, 2) their pixels; x_curr: (M, 2) the matched current pixels (network input resolution).
        weights: (M,) non-negative match weights.
        K: (3, 3) intrinsics at the network input resolution.
        generator: RNG of the sampling (reproducible runs).
        init_T_curr_ref: optional (4, 4) motion prior (constant velocity) competing with the sampled hypotheses.
        lost_variance: covariance diagonal reported when no pose is found.

    Returns:
        :class:`RelativePose`.
    """
    M = len(points_ref)
    problem = PoseProblem(
        K=torch.from_numpy(np.asarray(K, dtype=np.float64))[None],
        x_target=torch.from_numpy(np.ascontiguousarray(x_ref, dtype=np.float64))[None],
        x_context=torch.from_numpy(np.ascontiguousarray(x_curr, dtype=np.float64))[None],
        weights=torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float64))[None],
        points_target=torch.from_numpy(np.ascontiguousarray(points_ref, dtype=np.float64))[None],
        init_T_context_target=(None if init_T_curr_ref is None
                               else torch.from_numpy(np.asarray(init_T_curr_ref, dtype=np.float64))[None]))
    with torch.no_grad():
        result = source.solve(problem, generator)
    if not bool(result.valid[0]):
        return invalid_pose(M, lost_variance)
    T = result.T_context_target[0].double().numpy()
    pose = _finish(T[:3, :3], T[:3, 3], result.inliers[0].numpy(), result.methods()[0],
                   points_ref.astype(np.float64), x_ref.astype(np.float64), x_curr.astype(np.float64), K)
    if pose.valid and bool(result.fallback_used[0]):
        pose.fallback_note = result.fallback_note
    return pose if pose.valid else invalid_pose(M, lost_variance)
