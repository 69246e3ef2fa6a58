"""Keyframe decisions on constructed inputs, and the sliding-window bundle adjustment on a synthetic problem with
known landmarks: it lowers the reprojection error, recovers a perturbed pose, takes its scale from the depth prior and
shrugs off a wrong match."""

from __future__ import annotations

import numpy as np
import pytest

from priordepth_core.geometry.se3 import invert_transform_np
from priordepth_core.inference.keyframes import KeyframePolicy
from priordepth_core.inference.window_ba import SlidingWindowBundleAdjuster, WindowSettings

K = np.array([[200.0, 0.0, 160.0], [0.0, 200.0, 48.0], [0.0, 0.0, 1.0]])
SIZE_WH = (320, 96)


# ------------------------------------------------------------------------------------------------ keyframe policy
@pytest.mark.parametrize(("parallax", "inliers", "first", "frames", "expected", "why"), [
    (2.0, 95, 100, 1, False, ""),  # small motion, still well tracked
    (8.5, 95, 100, 1, True, "parallax"),  # enough baseline
    (2.0, 55, 100, 3, True, "tracked-match ratio 0.55"),  # the view moves away
    (2.0, 60, 100, 3, False, ""),  # exactly at the ratio: kept
    (2.0, 90, 100, 15, True, "15 frames"),  # too old
    (0.0, 0, 0, 1, True, "ratio 0.00"),  # nothing to compare with: take it
])
def test_keyframe_policy_decisions(parallax, inliers, first, frames, expected, why):
    decision = KeyframePolicy(parallax_px=8.0, min_tracked_ratio=0.6, max_frames=15).decide(
        parallax, inliers, first, frames)
    assert decision.new_keyframe is expected
    assert why in decision.reason
    assert (decision.reason == "") is (not expected)


def test_keyframe_policy_zero_parallax_is_frame_to_frame_and_bad_inputs_raise():
    assert KeyframePolicy(parallax_px=0.0).decide(0.0, 100, 100, 1).new_keyframe
    with pytest.raises(ValueError, match="frames since keyframe 0"):
        KeyframePolicy().decide(1.0, 10, 10, 0)
    with pytest.raises(ValueError, match="parallax -1"):
        KeyframePolicy().decide(-1.0, 10, 10, 1)


# ------------------------------------------------------------------------------------------------ window BA
def pose(x: float, yaw_deg: float = 0.0) -> np.ndarray:
    angle = np.radians(yaw_deg)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    T[0, 3] = x
    return T


def observe(T_odom_cam: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and camera points of odometry-frame landmarks."""
    points = (invert_transform_np(T_odom_cam) @ np.c_[landmarks, np.ones(len(landmarks))].T).T[:, :3]
    projected = points @ K.T
    return projected[:, :2] / projected[:, 2:], points


def synthetic_window(keyframes: int = 4, count: int = 120, seed: int = 0):
    """Landmarks 4-10 m ahead seen by keyframes 0.3 m apart sideways, turning a little: (poses, landmarks)."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(4.0, 10.0, count)
    pixels = np.c_[rng.uniform(20, SIZE_WH[0] - 20, count), rng.uniform(10, SIZE_WH[1] - 10, count)]
    landmarks = np.c_[(pixels - K[:2, 2]) / K[0, 0] * depth[:, None], depth]
    return [pose(0.3 * i, 1.0 * i) for i in range(keyframes)], landmarks


def perturbation(dx: float, dyaw_deg: float) -> np.ndarray:
    return pose(dx, dyaw_deg) @ np.diag([1.0, 1.0, 1.0, 1.0])


def run_window(poses, landmarks, initial_poses, pixel_noise=0.3, depth_scale=1.0, seed=1, outlier=False,
               settings=None):
    rng = np.random.default_rng(seed)
    adjuster = SlidingWindowBundleAdjuster(settings or WindowSettings(window=4, max_iterations=20))
    identity = np.arange(len(landmarks))
    result = None
    for index, (T_true, T_init) in enumerate(zip(poses, initial_poses)):
        pixels, points = observe(T_true, landmarks)
        pixels = pixels + rng.normal(0, pixel_noise, pixels.shape)
        # The "predicted depth": the true depth times a scale (a network's), with 3 % noise.
        points = points * (depth_scale * (1 + rng.normal(0, 0.03, len(points))))[:, None]
        matches = np.c_[identity, identity] if index else None
        if outlier and index == len(poses) - 1:
            pixels[:10] = pixels[:10][::-1] + 40.0  # ten wrong matches, far off
        result = adjuster.add_keyframe(T_init, K, pixels, points, matches)
    return result, adjuster


def test_window_ba_recovers_a_perturbed_newest_pose_and_lowers_the_reprojection_error():
    poses, landmarks = synthetic_window()
    initial = [*poses[:-1], poses[-1] @ perturbation(0.08, 2.0)]  # 8 cm and 2 degrees off
    result, adjuster = run_window(poses, landmarks, initial)
    assert result.optimised, result.message
    assert result.num_landmarks == len(landmarks) and result.num_observations == 4 * len(landmarks)
    assert result.rms_after_px < 0.5 < 3.0 < result.rms_before_px
    error = invert_transform_np(poses[-1]) @ result.T_odom_cam
    # 8 cm -> under 2 cm: what 0.3 px noise and 3 % depth noise (the only scale) leave over a 0.9 m baseline.
    assert np.linalg.norm(error[:3, 3]) < 0.02
    assert np.degrees(np.arccos(np.clip((np.trace(error[:3, :3]) - 1) / 2, -1, 1))) < 0.2
    # The oldest keyframe is the fixed gauge.
    assert np.allclose(adjuster.keyframe_poses()[0], poses[0], atol=1e-6)
    # The newest keyframe's points are the refined landmarks in its camera: the depth priors of the window and the
    # triangulation combined are closer to the truth than one frame's lifted keypoints (3 % depth noise: ~2 %
    # median error).
    _, true_points = observe(poses[-1], landmarks)
    relative_error = np.linalg.norm(result.points_cam - true_points, axis=1) / true_points[:, 2]
    assert np.median(relative_error) < 0.018


def test_window_ba_scale_comes_from_the_depth_prior():
    """Poses initialised at the true scale but a depth twice as large: the window moves to the depth's scale."""
    poses, landmarks = synthetic_window()
    result, adjuster = run_window(poses, landmarks, poses, depth_scale=2.0)
    assert result.optimised
    # The oldest pose is fixed, so the baseline to the newest doubles (the landmarks are twice as far).
    baseline = np.linalg.norm(result.T_odom_cam[:3, 3] - poses[0][:3, 3])
    assert baseline == pytest.approx(2 * 0.9, rel=0.05)


def test_window_ba_is_robust_to_wrong_matches():
    poses, landmarks = synthetic_window()
    initial = [*poses[:-1], poses[-1] @ perturbation(0.05, 1.0)]
    result, _ = run_window(poses, landmarks, initial, outlier=True)
    error = invert_transform_np(poses[-1]) @ result.T_odom_cam
    assert np.linalg.norm(error[:3, 3]) < 0.02


def test_window_slides_and_restarts_without_a_link():
    poses, landmarks = synthetic_window(keyframes=6)
    _, adjuster = run_window(poses[:5], landmarks, poses[:5], settings=WindowSettings(window=3))
    second_oldest = adjuster.keyframe_poses()[1]
    pixels, points = observe(poses[5], landmarks)
    identity = np.arange(len(landmarks))
    result = adjuster.add_keyframe(poses[5], K, pixels, points, np.c_[identity, identity])
    assert adjuster.num_keyframes == 3 and result.optimised
    # The window slid by one: its new oldest keyframe is held where the previous solve left it.
    assert np.allclose(adjuster.keyframe_poses()[0], second_oldest, atol=1e-6)
    pixels, points = observe(poses[0], landmarks)
    alone = adjuster.add_keyframe(poses[0], K, pixels, points, None)
    assert adjuster.num_keyframes == 1 and not alone.optimised and "fewer than 3 keyframes" in alone.message
    with pytest.raises(ValueError, match="does not exist"):
        adjuster.add_keyframe(poses[1], K, pixels, points, np.array([[0, len(pixels)]]))
    with pytest.raises(ValueError, match="at least 2 keyframes"):
        SlidingWindowBundleAdjuster(WindowSettings(window=1))
