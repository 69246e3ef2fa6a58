"""Trajectory metrics: Umeyama alignment, ATE, RPE (as evo), KITTI odometry errors (as the devkit), and
MonoDepth2's 5-frame snippet ATE.

Trajectories are (N, 4, 4) numpy arrays of camera-to-world poses ``T_world_cam`` with corresponding rows already
associated (``pose_cli.associate_trajectories`` pairs two trajectory files, by timestamp as evo's
``sync.associate_trajectories`` or by index). Everything is float64.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

from ..geometry.se3 import invert_transform_np

Alignment = Literal["se3", "sim3", "scale", "none"]

KITTI_SEGMENT_LENGTHS = (100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0)
KITTI_STEP_FRAMES = 10  # the devkit evaluates segments starting every 10 frames (one second at 10 Hz)


def _check_trajectory(T: np.ndarray, name: str, length: int | None = None) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3 or T.shape[1:] != (4, 4):
        raise ValueError(f"{name} must have shape (N, 4, 4), got {T.shape}")
    if length is not None and len(T) != length:
        raise ValueError(f"{name} has {len(T)} poses but the reference has {length}")
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{name} contains non-finite values")
    return T


def _statistics(errors: np.ndarray) -> dict[str, float]:
    """evo's statistics of an error vector (rmse, mean, median, std, min, max, sse)."""
    return {
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "mean": float(np.mean(errors)),
        "median": float(np.median(errors)),
        "std": float(np.std(errors)),
        "min": float(np.min(errors)),
        "max": float(np.max(errors)),
        "sse": float(np.sum(errors**2)),
    }


def umeyama_alignment(x: np.ndarray, y: np.ndarray, with_scale: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares similarity ``y ≈ s R x + t`` (Umeyama, PAMI 1991).

    Args:
        x: (N, 3) points to align (estimate positions).
        y: (N, 3) reference points.
        with_scale: also estimate the scale ``s``; otherwise ``s = 1``.

    Returns:
        ``(R (3, 3), t (3,), s)``.

    Raises:
        ValueError: mismatched shapes or a degenerate point set (covariance rank below 2).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x and y must both have shape (N, 3), got {x.shape} and {y.shape}")
    mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mean_x, y - mean_y
    variance_x = np.mean(np.sum(xc**2, axis=1))
    covariance = yc.T @ xc / len(x)  # (3, 3), eq. 38
    u, d, vt = np.linalg.svd(covariance)
    if np.count_nonzero(d > np.finfo(d.dtype).eps) < 2:
        raise ValueError("degenerate point set: Umeyama alignment needs positions spanning at least a line")
    s_matrix = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s_matrix[2, 2] = -1.0  # keep a proper rotation
    R = u @ s_matrix @ vt
    scale = float(np.trace(np.diag(d) @ s_matrix) / variance_x) if with_scale else 1.0
    t = mean_y - scale * R @ mean_x
    return R, t, scale


def align_trajectory(T_world_est: np.ndarray, T_world_ref: np.ndarray, alignment: Alignment = "se3",
                     num_poses: int | None = None) -> tuple[np.ndarray, dict]:
    """Align an estimated trajectory to a reference by Umeyama on positions (evo's ``PosePath3D.align``).

    Args:
        T_world_est: (N, 4, 4) estimated camera-to-world poses.
        T_world_ref: (N, 4, 4) reference poses, row-associated with the estimate.
        alignment: ``"se3"`` (rotation + translation), ``"sim3"`` (plus scale; monocular), ``"scale"`` (scale only,
            positions multiplied about the origin), or ``"none"``.
        num_poses: use only the first ``num_poses`` poses to estimate the alignment (evo ``n``); None = all.

    Returns:
        ``(T_world_aligned (N, 4, 4), info)`` with ``info = {"alignment", "rotation" (3, 3), "translation" (3,),
        "scale"}``. The aligned pose is ``S @ T_est`` with ``S = [sR, t]`` applied to positions (rotations get R).
    """
    T_ref = _check_trajectory(T_world_ref, "T_world_ref")
    T_est = _check_trajectory(T_world_est, "T_world_est", len(T_ref))
    if alignment not in ("se3", "sim3", "scale", "none"):
        raise ValueError(f"alignment must be 'se3', 'sim3', 'scale' or 'none', got {alignment!r}")
    R, t, scale = np.eye(3), np.zeros(3), 1.0
    if alignment != "none":
        n = len(T_ref) if num_poses is None else num_poses
        R, t, scale = umeyama_alignment(T_est[:n, :3, 3], T_ref[:n, :3, 3], with_scale=alignment != "se3")
        if alignment == "scale":
            R, t = np.eye(3), np.zeros(3)
    aligned = T_est.copy()
    aligned[:, :3, :3] = R @ T_est[:, :3, :3]
    aligned[:, :3, 3] = scale * T_est[:, :3, 3] @ R.T + t
    return aligned, {"alignment": alignment, "rotation": R, "translation": t, "scale": scale}


def absolute_trajectory_error(T_world_est: np.ndarray, T_world_ref: np.ndarray, alignment: Alignment = "se3"
                              ) -> dict:
    """ATE: translation error of each pose after alignment (evo APE, ``translation_part``).

    Args:
        T_world_est: (N, 4, 4) estimate.
        T_world_ref: (N, 4, 4) reference, row-associated.
        alignment: see :func:`align_trajectory`.

    Returns:
        evo's statistics of the per-pose errors in the reference's units (``rmse``, ``mean``, ``median``, ``std``,
        ``min``, ``max``, ``sse``), ``errors`` (N,), ``alignment``, ``scale`` and ``num_poses``.
    """
    aligned, info = align_trajectory(T_world_est, T_world_ref, alignment)
    errors = np.linalg.norm(aligned[:, :3, 3] - np.asarray(T_world_ref, dtype=np.float64)[:, :3, 3], axis=1)
    return {**_statistics(errors), "errors": errors, "alignment": info["alignment"], "scale": info["scale"],
            "num_poses": len(errors)}


def relative_pose_error(T_world_est: np.ndarray, T_world_ref: np.ndarray, delta: int = 1,
                        alignment: Alignment = "none") -> dict:
    """RPE over consecutive pairs ``delta`` frames apart (evo RPE, ``delta_unit=frames``, ``all_pairs=False``).

    For pairs ``(i, j)`` with ``i = 0, delta, 2 delta, ...`` and ``j = i + delta``:
    ``E = (Q_i^-1 Q_j)^-1 (P_i^-1 P_j)`` for reference Q and estimate P.

    Args:
        T_world_est: (N, 4, 4) estimate.
        T_world_ref: (N, 4, 4) reference, row-associated.
        delta: frame distance (>= 1).
        alignment: alignment applied first (RPE is invariant to ``"se3"``; ``"sim3"``/``"scale"`` fix the scale of a
            monocular estimate).

    Returns:
        ``{"translation": stats, "rotation_deg": stats, "translation_errors" (P,), "rotation_errors_deg" (P,),
        "pairs" (P, 2), "delta", "alignment", "scale"}`` with evo's statistics; translation in the reference's
        units, rotation as the angle of ``E``'s rotation in degrees.
    """
    if delta < 1:
        raise ValueError(f"delta must be at least 1, got {delta}")
    aligned, info = align_trajectory(T_world_est, T_world_ref, alignment)
    T_ref = np.asarray(T_world_ref, dtype=np.float64)
    ids = np.arange(0, len(T_ref), delta)
    i, j = ids[:-1], ids[1:]
    if len(i) == 0:
        raise ValueError(f"a trajectory of {len(T_ref)} poses has no pair {delta} frames apart")
    ref_rel = invert_transform_np(T_ref[i]) @ T_ref[j]
    est_rel = invert_transform_np(aligned[i]) @ aligned[j]
    E = invert_transform_np(ref_rel) @ est_rel
    translation_errors = np.linalg.norm(E[:, :3, 3], axis=1)
    rotation_errors = np.degrees(Rotation.from_matrix(E[:, :3, :3]).magnitude())
    return {
        "translation": _statistics(translation_errors),
        "rotation_deg": _statistics(rotation_errors),
        "translation_errors": translation_errors,
        "rotation_errors_deg": rotation_errors,
        "pairs": np.stack([i, j], axis=1),
        "delta": delta,
        "alignment": info["alignment"],
        "scale": info["scale"],
    }


def trajectory_distances(T_world_cam: np.ndarray) -> np.ndarray:
    """(N,) cumulative path length along the camera positions, 0 at the first pose (KITTI devkit)."""
    T = _check_trajectory(T_world_cam, "T_world_cam")
    steps = np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def _last_frame_from_segment_length(distances: np.ndarray, first_frame: int, length: float) -> int:
    """First frame whose distance exceeds ``distances[first_frame] + length``; -1 if none (devkit)."""
    beyond = np.flatnonzero(distances[first_frame:] > distances[first_frame] + length)
    return int(first_frame + beyond[0]) if beyond.size else -1


def kitti_odometry_error(T_world_est: np.ndarray, T_world_ref: np.ndarray,
                         lengths: tuple[float, ...] = KITTI_SEGMENT_LENGTHS, step: int = KITTI_STEP_FRAMES,
                         alignment: Alignment = "none") -> dict:
    """KITTI odometry translational and rotational drift, as ``evaluate_odometry.cpp`` of the devkit.

    For every first frame ``0, step, 2 step, ...`` and every segment length, the last frame is the first one whose
    ground-truth path distance exceeds the first frame's by the length; the error pose is
    ``(P_f^-1 P_l)^-1 (Q_f^-1 Q_l)``; its translation norm and rotation angle are divided by the length. The
    sequence error averages over all segments (all lengths pooled). The devkit runs in float32; this in float64.

    Args:
        T_world_est: (N, 4, 4) estimate (KITTI: the left camera's poses).
        T_world_ref: (N, 4, 4) ground truth, row-associated.
        lengths: segment lengths in the reference's units (metres).
        step: frames between segment starts.
        alignment: applied first; the devkit applies none (``"sim3"`` is usual for monocular estimates).

    Returns:
        ``t_err_percent`` (mean translational error / length x 100), ``r_err_deg_per_100m`` (mean rotational error
        / length in deg x 100), ``num_segments``, ``per_length`` ({length: (t_err_percent, r_err_deg_per_100m,
        count)} for lengths that occur), ``segments`` (K, 4) rows ``(first_frame, length, t_err/len, r_err/len
        rad)``, ``alignment`` and ``scale``.

    Raises:
        ValueError: if the trajectory is shorter than the smallest segment length.
    """
    aligned, info = align_trajectory(T_world_est, T_world_ref, alignment)
    T_ref = np.asarray(T_world_ref, dtype=np.float64)
    distances = trajectory_distances(T_ref)
    rows = []
    for first in range(0, len(T_ref), step):
        for length in lengths:
            last = _last_frame_from_segment_length(distances, first, length)
            if last == -1:
                continue
            delta_ref = invert_transform_np(T_ref[first]) @ T_ref[last]
            delta_est = invert_transform_np(aligned[first]) @ aligned[last]
            error = invert_transform_np(delta_est) @ delta_ref
            cos_angle = np.clip(0.5 * (np.trace(error[:3, :3]) - 1.0), -1.0, 1.0)
            rows.append((first, length, np.linalg.norm(error[:3, 3]) / length, np.arccos(cos_angle) / length))
    if not rows:
        raise ValueError(f"trajectory of path length {distances[-1]:.1f} is shorter than every segment length")
    segments = np.array(rows)
    per_length = {}
    for length in lengths:
        selected = segments[segments[:, 1] == length]
        if len(selected):
            per_length[length] = (float(selected[:, 2].mean() * 100), float(np.degrees(selected[:, 3].mean()) * 100),
                                  len(selected))
    return {
        "t_err_percent": float(segments[:, 2].mean() * 100),
        "r_err_deg_per_100m": float(np.degrees(segments[:, 3].mean()) * 100),
        "num_segments": len(segments),
        "per_length": per_length,
        "segments": segments,
        "alignment": info["alignment"],
        "scale": info["scale"],
    }


def snippet_ate(gt_xyz: np.ndarray, pred_xyz: np.ndarray) -> float:
    """MonoDepth2 / SfMLearner ``compute_ate`` of one snippet.

    The first positions are made to coincide, the prediction is scaled by ``sum(gt * pred) / sum(pred**2)``, and the
    result is ``sqrt(sum of squared errors) / n`` -- as in the original code, not an RMSE over points.

    Args:
        gt_xyz: (n, 3) ground-truth positions in the snippet's first frame.
        pred_xyz: (n, 3) predicted positions.

    Returns:
        the snippet error.
    """
    gt_xyz = np.asarray(gt_xyz, dtype=np.float64)
    pred_xyz = np.asarray(pred_xyz, dtype=np.float64)
    if gt_xyz.shape != pred_xyz.shape or gt_xyz.ndim != 2 or gt_xyz.shape[1] != 3:
        raise ValueError(f"gt_xyz and pred_xyz must both have shape (n, 3), got {gt_xyz.shape}, {pred_xyz.shape}")
    pred_xyz = pred_xyz + (gt_xyz[0] - pred_xyz[0])
    scale = np.sum(gt_xyz * pred_xyz) / np.sum(pred_xyz**2)
    return float(np.sqrt(np.sum((pred_xyz * scale - gt_xyz) ** 2)) / gt_xyz.shape[0])


def _accumulate_positions(local_poses: np.ndarray) -> np.ndarray:
    """SfMLearner ``dump_xyz``: positions of ``I, L_0, L_0 L_1, ...`` -> (len + 1, 3)."""
    cam_to_world = np.eye(4)
    positions = [cam_to_world[:3, 3].copy()]
    for pose in local_poses:
        cam_to_world = cam_to_world @ pose
        positions.append(cam_to_world[:3, 3].copy())
    return np.array(positions)


def snippet_ate_sequence(T_next_curr_est: np.ndarray, T_world_ref: np.ndarray, track_length: int = 5) -> dict:
    """MonoDepth2's odometry evaluation (``evaluate_pose.py``): snippet ATE over every window of ``track_length``.

    MonoDepth2 feeds consecutive frames ``(i, i + 1)`` to the pose network and gets ``T_{i+1 <- i}`` (it maps frame
    ``i`` points into frame ``i + 1``); the ground truth counterpart is ``inv(inv(G_i) G_{i+1})``. Windows start at
    every frame ``i < N - 1`` and hold ``track_length - 1`` relative poses (fewer at the end, as in the original).

    Args:
        T_next_curr_est: (N - 1, 4, 4) predicted ``T_{i+1 <- i}``.
        T_world_ref: (N, 4, 4) ground-truth camera-to-world poses ``G_i``.
        track_length: frames per snippet (MonoDepth2: 5).

    Returns:
        ``{"mean", "std", "errors" (N - 1,), "track_length"}``.
    """
    T_ref = _check_trajectory(T_world_ref, "T_world_ref")
    T_est = _check_trajectory(T_next_curr_est, "T_next_curr_est", len(T_ref) - 1)
    if track_length < 2:
        raise ValueError(f"track_length must be at least 2, got {track_length}")
    T_ref_local = invert_transform_np(invert_transform_np(T_ref[:-1]) @ T_ref[1:])
    errors = np.array([
        snippet_ate(_accumulate_positions(T_ref_local[i:i + track_length - 1]),
                    _accumulate_positions(T_est[i:i + track_length - 1]))
        for i in range(len(T_ref) - 1)
    ])
    return {"mean": float(np.mean(errors)), "std": float(np.std(errors)), "errors": errors,
            "track_length": track_length}
