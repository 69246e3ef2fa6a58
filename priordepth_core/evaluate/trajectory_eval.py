"""Trajectories of test sequences from a trained model's pose source, or from a classical ORB baseline.

Frame-to-frame relative poses ``T_prev_curr`` are estimated for every consecutive pair of a sequence and chained into
``T_world_cam``. A pair whose solve fails (invalid or too few inliers) keeps the previous relative motion (constant
velocity, what an odometry front end would do) and is counted, so the failure rate is reported next to ATE/RPE.

- ``trained``: the checkpoint's final pose source exactly as in training (PoseNet, or KeypointNet matches + the
  RANSAC essential/PnP solve with the predicted depth) at the training resolution.
- ``orb``: ORB (2000 features) + OpenCV's 5-point RANSAC essential matrix + ``recoverPose`` at the native image
  resolution; translation length from ground truth (the classical monocular baseline, pose only).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from .pose_metrics import absolute_trajectory_error, relative_pose_error

# Pairs predicted per forward pass of the trained model.
PAIR_BATCH = 16
ORB_FEATURES = 2000
ORB_RANSAC_THRESHOLD_PX = 1.0
ORB_MIN_MATCHES = 8
ORB_CHEIRALITY_DISTANCE = 1e4


@dataclass
class SequenceTrajectory:
    """One sequence's estimated and reference trajectory (row-associated), with the failed-pair count."""

    name: str
    stamps: np.ndarray  # (N,)
    T_world_est: np.ndarray  # (N, 4, 4)
    T_world_ref: np.ndarray  # (N, 4, 4)
    failed_pairs: int
    metrics: dict[str, float] = field(default_factory=dict)


def chain_relative_poses(T_prev_curr: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """(N+1, 4, 4) poses of frames 0..N from N relative poses; invalid ones repeat the last valid motion.

    Args:
        T_prev_curr: (N, 4, 4) pose of frame i+1 in frame i's camera.
        valid: (N,) bool.

    Returns:
        ``T_world_cam`` with frame 0 at the identity, and the number of invalid pairs.
    """
    T_world = [np.eye(4)]
    last_motion = np.eye(4)
    for T, ok in zip(T_prev_curr, valid):
        if ok and np.isfinite(T).all():
            last_motion = T
        T_world.append(T_world[-1] @ last_motion)
    return np.stack(T_world), int((~np.asarray(valid, dtype=bool)).sum())


def trajectory_metrics(T_world_est: np.ndarray, T_world_ref: np.ndarray) -> dict[str, float]:
    """ATE (Sim(3)-aligned, monocular) and RPE (1 frame, after the same scale correction) in the reference's units."""
    ate = absolute_trajectory_error(T_world_est, T_world_ref, alignment="sim3")
    rpe = relative_pose_error(T_world_est, T_world_ref, delta=1, alignment="sim3")
    return {"ate_rmse": float(ate["rmse"]), "rpe_trans_rmse": float(rpe["translation"]["rmse"]),
            "rpe_rot_rmse_deg": float(rpe["rotation_deg"]["rmse"]), "sim3_scale": float(ate["scale"])}


def _pairs_by_sequence(dataset: Dataset) -> Iterator[tuple[str, list[int]]]:
    """Indices of a single-context (offset -1) dataset grouped by sequence, in frame order."""
    datasets = getattr(dataset, "datasets", [dataset])
    offset = 0
    for part in datasets:
        yield str(getattr(part.reader, "root", f"sequence_{offset}")), list(range(offset, offset + len(part)))
        offset += len(part)


def _reference(samples: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Stamps and ground-truth ``T_world_cam`` of frames 0..N of a sequence from its N pair samples."""
    if any("T_world_cam" not in s or "T_context_target" not in s for s in samples):
        raise ValueError("trajectory evaluation needs ground-truth poses (T_world_cam) in the dataset")
    first = samples[0]
    T_world_first_context = (first["T_world_cam"].double() @ torch.linalg.inv(first["T_context_target"][0].double()))
    T_ref = [T_world_first_context.numpy()] + [s["T_world_cam"].double().numpy() for s in samples]
    period = float(samples[1]["stamp"] - first["stamp"]) if len(samples) > 1 else 0.0
    stamps = [float(first["stamp"]) - period] + [float(s["stamp"]) for s in samples]
    return np.asarray(stamps), np.stack(T_ref)


@torch.no_grad()
def trained_relative_poses(model: torch.nn.Module, samples: list[dict], device: str | torch.device = "cpu"
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``T_prev_curr`` (N, 4, 4), usable (N,) and solver-failed (N,) from a ``DepthPoseModel``.

    ``samples`` carry the current frame as ``image`` and the previous one as ``context`` (offset -1); the model's
    ``T_context_target`` is then ``T_prev_curr``. With ``pose.fallback: posenet`` a failed solve is replaced by the
    PoseNet's pose (usable, but counted as solver-failed).
    """
    model.eval()
    poses, valid, failed = [], [], []
    for start in range(0, len(samples), PAIR_BATCH):
        chunk = samples[start:start + PAIR_BATCH]
        # The model's inputs: images, K, offsets and, for sources that read it, the frozen match cache's keys.
        batch = {key: torch.stack([s[key] for s in chunk]).to(device) for key in chunk[0]
                 if key in ("image", "context", "K", "context_offsets") or key.startswith(("match_", "essential_"))}
        out = model(batch, step=10**9)  # past any warm-up: the run's final pose source
        solved = out["pose_valid"][:, 0].cpu()
        fallback = out["pose_fallback"][:, 0].cpu() if "pose_fallback" in out else torch.zeros_like(solved)
        poses.append(out["T_context_target"][:, 0].double().cpu())
        valid.append(solved | fallback)
        failed.append(~solved)
    return torch.cat(poses).numpy(), torch.cat(valid).numpy(), torch.cat(failed).numpy()


def orb_relative_poses(samples: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4, 4) ``T_prev_curr`` and (N,) validity from ORB + OpenCV 5-point RANSAC, scale from ground truth."""
    import cv2

    orb = cv2.ORB_create(nfeatures=ORB_FEATURES)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)

    def gray(image: torch.Tensor) -> np.ndarray:
        rgb = (image.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

    poses, valid = [], []
    for sample in samples:
        K = sample["K"].double().numpy()
        kp_curr, desc_curr = orb.detectAndCompute(gray(sample["image"]), None)
        kp_prev, desc_prev = orb.detectAndCompute(gray(sample["context"][0]), None)
        T = np.eye(4)
        ok = False
        if desc_curr is not None and desc_prev is not None:
            matches = matcher.match(desc_curr, desc_prev)
            if len(matches) >= ORB_MIN_MATCHES:
                x_curr = np.float64([kp_curr[m.queryIdx].pt for m in matches])
                x_prev = np.float64([kp_prev[m.trainIdx].pt for m in matches])
                E, mask = cv2.findEssentialMat(x_curr, x_prev, K, method=cv2.RANSAC, prob=0.999,
                                               threshold=ORB_RANSAC_THRESHOLD_PX)
                if E is not None and E.shape == (3, 3):
                    # A far cheirality limit: with the default (50 baselines) a slow camera's points all count as
                    # "at infinity" and every pose would be rejected.
                    inliers, R, t, _, _ = cv2.recoverPose(
                        E, x_curr, x_prev, K, distanceThresh=ORB_CHEIRALITY_DISTANCE, mask=mask)
                    # recoverPose: X_prev = R X_curr + t, i.e. T_prev_curr up to the length of t.
                    gt_length = float(sample["T_context_target"][0, :3, 3].norm())
                    T[:3, :3], T[:3, 3] = R, t[:, 0] / max(np.linalg.norm(t), 1e-12) * gt_length
                    ok = inliers >= ORB_MIN_MATCHES
        poses.append(T)
        valid.append(ok)
    return np.stack(poses), np.asarray(valid, dtype=bool)


def evaluate_trajectories(dataset: Dataset, relative_poses) -> list[SequenceTrajectory]:
    """Chain ``relative_poses(samples) -> (T_prev_curr, valid)`` over each sequence and score it against GT.

    Args:
        dataset: a split built with ``context_offsets == [-1]`` (one pair per frame after the first).
        relative_poses: :func:`trained_relative_poses` (bound to a model) or :func:`orb_relative_poses`; may return
            a third array, the pairs whose own solve failed (counted as failed even when a fallback pose was used).
    """
    results = []
    for name, indices in _pairs_by_sequence(dataset):
        samples = [dataset[i] for i in indices]
        if len(samples) < 2:
            raise ValueError(f"sequence {name} has fewer than 3 frames")
        stamps, T_ref = _reference(samples)
        T_prev_curr, valid, *solver_failed = relative_poses(samples)
        T_est, failed = chain_relative_poses(T_prev_curr, valid)
        if solver_failed:
            failed = int(np.asarray(solver_failed[0], dtype=bool).sum())
        result = SequenceTrajectory(name=name, stamps=stamps, T_world_est=T_est, T_world_ref=T_ref,
                                    failed_pairs=failed)
        result.metrics = {**trajectory_metrics(T_est, T_ref), "failed_pair_fraction": failed / len(samples)}
        results.append(result)
    return results


def mean_metrics(results: list[SequenceTrajectory]) -> dict[str, float]:
    """Per-sequence metrics averaged over the sequences (each sequence counts once)."""
    keys = results[0].metrics.keys()
    return {key: float(np.mean([r.metrics[key] for r in results])) for key in keys}
