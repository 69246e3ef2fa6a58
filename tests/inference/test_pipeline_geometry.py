"""The pipeline's geometry helpers: ground-plane camera height, PnP covariance, covariance propagation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from priordepth_core.geometry.se3 import invert_transform_np
from priordepth_core.inference.ground_plane import estimate_camera_height
from priordepth_core.inference.odometry import adjoint, propagate, rotate_covariance
from priordepth_core.inference.relative_pose import estimate_relative_pose, reprojection_covariance
from priordepth_core.pose import PoseSourceSettings, build_pose_source

K = np.array([[180.0, 0.0, 159.5], [0.0, 180.0, 47.5], [0.0, 0.0, 1.0]])


def pipeline_source(threshold_px: float):
    """The Pipeline's default pose source with its inference settings (min_inliers 20, 64 hypotheses)."""
    return build_pose_source("pnp_essential", PoseSourceSettings(
        num_hypotheses=64, threshold_px=threshold_px, min_inliers=20, differentiable=False, pnp_dtype=torch.float32))


def ground_depth(height_m: float, pitch_deg: float, size=(96, 320)) -> np.ndarray:
    """Exact depth of a flat ground ``height_m`` below a camera pitched down by ``pitch_deg``; sky = 0."""
    H, W = size
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)], -1)
    pitch = np.radians(pitch_deg)
    # Ground normal (pointing down, towards the ground) in the camera frame: world down tilted by the pitch.
    normal = np.array([0.0, np.cos(pitch), -np.sin(pitch)])
    along = rays @ normal
    depth = np.where(along > 1e-6, height_m / np.maximum(along, 1e-6), 0.0)
    return depth.astype(np.float32)


@pytest.mark.parametrize("height, pitch", [(1.65, 0.0), (1.2, 4.0), (30.0, -2.0)])
def test_pipeline_ground_plane_height(height, pitch):
    depth = ground_depth(height, pitch)
    # Clutter in the lower image: a box 3 m ahead in the middle columns.
    depth[70:, 140:180] = np.minimum(depth[70:, 140:180], 3.0 * height / 1.65)
    plane = estimate_camera_height(depth, K, np.random.default_rng(0))
    assert plane is not None
    assert plane.height == pytest.approx(height, rel=0.01)
    assert np.degrees(np.arccos(plane.normal[1])) == pytest.approx(abs(pitch), abs=0.5)
    assert plane.inlier_fraction > 0.5


def test_pipeline_ground_plane_absent():
    wall = np.full((96, 320), 4.0, dtype=np.float32)  # a fronto-parallel wall: vertical, not ground
    assert estimate_camera_height(wall, K, np.random.default_rng(0)) is None
    assert estimate_camera_height(np.zeros((96, 320), np.float32), K, np.random.default_rng(0)) is None
    ceiling = ground_depth(1.0, 0.0)[::-1].copy()  # a plane above the camera
    assert estimate_camera_height(ceiling, K, np.random.default_rng(0)) is None


def test_pipeline_pnp_covariance_matches_monte_carlo():
    """The reported PnP covariance predicts the spread of the estimates under pixel noise (within a factor 2)."""
    rng = np.random.default_rng(0)
    points = np.stack([rng.uniform(-4, 4, 150), rng.uniform(-1, 1.5, 150), rng.uniform(4, 25, 150)], axis=1)
    angle = np.radians(2.0)
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    t = np.array([0.05, -0.02, -0.8])
    projected = (points @ R.T + t) @ K.T
    pixels = projected[:, :2] / projected[:, 2:]
    noise_px = 0.7
    estimates, covariances = [], []
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        noisy = pixels + rng.normal(0, noise_px, pixels.shape)
        pose = estimate_relative_pose(pipeline_source(3.0), points, pixels, noisy, np.ones(len(points)), K, generator)
        assert pose.valid and pose.method == "pnp" and pose.num_inliers > 140
        estimates.append(pose.T_curr_ref[:3, 3] - t)
        covariances.append(pose.covariance)
    # Translation error covariance from the left update: the translation's own block.
    empirical = np.cov(np.array(estimates).T)
    predicted = np.mean(covariances, axis=0)[:3, :3]
    ratio = np.diag(empirical) / np.diag(predicted)
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
    # More points, less uncertainty.
    cov_all, _, _ = reprojection_covariance(R, t, points, pixels, K)
    cov_few, _, _ = reprojection_covariance(R, t, points[:20], pixels[:20], K)
    assert np.trace(cov_few) > 3 * np.trace(cov_all)


def test_pipeline_relative_pose_invalid_inputs_give_large_covariance():
    generator = torch.Generator().manual_seed(0)
    few = estimate_relative_pose(pipeline_source(2.0), np.ones((4, 3)), np.zeros((4, 2)), np.zeros((4, 2)),
                                 np.ones(4), K, generator, lost_variance=1e4)
    assert not few.valid and few.method == "none"
    assert np.array_equal(few.covariance, np.eye(6) * 1e4) and np.array_equal(few.T_curr_ref, np.eye(4))
    rng = np.random.default_rng(1)
    garbage = estimate_relative_pose(pipeline_source(2.0), rng.uniform(1, 5, (50, 3)), rng.uniform(0, 300, (50, 2)),
                                     rng.uniform(0, 300, (50, 2)), np.ones(50), K, generator)
    assert garbage.num_inliers < 20
    assert np.isfinite(garbage.T_curr_ref).all() and np.isfinite(garbage.covariance).all()


def test_pipeline_covariance_propagation():
    rng = np.random.default_rng(2)
    angle = 0.3
    T = np.eye(4)
    T[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    T[:3, 3] = [1.0, -2.0, 0.5]
    # Adjoint property: T exp(xi) T^-1 = exp(Ad_T xi), to first order.
    xi = 1e-6 * rng.normal(size=6)
    exp_xi = np.eye(4)
    exp_xi[:3, :3] += np.array([[0, -xi[5], xi[4]], [xi[5], 0, -xi[3]], [-xi[4], xi[3], 0]])
    exp_xi[:3, 3] = xi[:3]
    lhs = T @ exp_xi @ invert_transform_np(T) - np.eye(4)
    mapped = adjoint(T) @ xi
    assert np.allclose(lhs[:3, 3], mapped[:3], atol=1e-12)
    assert np.allclose(lhs[2, 1], mapped[3], atol=1e-12)
    # Chaining with an exact relative motion adds its covariance and transports the old one.
    A = rng.normal(size=(6, 6))
    sigma_ref = A @ A.T * 1e-4
    sigma_rel = np.diag([1e-4, 2e-4, 3e-4, 1e-6, 2e-6, 3e-6])
    sigma = propagate(sigma_ref, T, sigma_rel)
    assert np.allclose(sigma, sigma.T) and np.linalg.eigvalsh(sigma).min() > 0
    assert np.trace(sigma) > np.trace(sigma_rel)
    assert np.allclose(propagate(np.zeros((6, 6)), T, sigma_rel), sigma_rel)
    # Rotating a covariance into other axes keeps its trace.
    assert np.trace(rotate_covariance(sigma, T[:3, :3])) == pytest.approx(np.trace(sigma))
