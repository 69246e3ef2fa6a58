"""Tracking behaviour of the Pipeline on exact synthetic frames: pose conventions and accuracy, loss of tracking
(blank and noise frames), recovery, pure rotation, blur; never a NaN.

Depth comes from an oracle backend (the exact plane depth) where the geometry is under test, so the bounds measure
the pipeline's lifting, PnP and accumulation rather than the network's depth; keypoints always come from the
shipped KeypointNet.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from priordepth_core.inference import LOST_VARIANCE, Pipeline, PipelineConfig, TrackingState
from priordepth_core.inference.model_file import default_checkpoint_path

PLANE_DEPTH = 6.0  # as in conftest.py


def make_pipeline(backend, **overrides) -> Pipeline:
    return Pipeline(PipelineConfig(**overrides), default_checkpoint_path(), backend=backend)


def assert_finite(result) -> None:
    for name in ("T_prev_curr", "T_odom_curr", "covariance", "relative_covariance"):
        value = getattr(result, name)
        assert np.all(np.isfinite(value)), f"{name} has non-finite entries"
    assert np.isfinite(result.depth).all(), "depth has NaN/inf"
    assert np.allclose(result.T_odom_curr[3], [0, 0, 0, 1])
    R = result.T_odom_curr[:3, :3]
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-9)


def test_pipeline_tracks_sideways_plane_motion_exactly(plane_depth_backend, plane_sequence_frames):
    seq = plane_sequence_frames
    # Keyframes at 7 px parallax: the crop shifts 4 px per frame, so every other frame (8 px) is one; a threshold at
    # exactly 8 px made the choice depend on sub-pixel noise.
    pipeline = make_pipeline(plane_depth_backend, keyframe_parallax_px=7.0)
    results = [pipeline.process(frame, seq.K, 0.1 * i) for i, frame in enumerate(seq.frames)]
    assert results[0].tracking_state == TrackingState.INITIALIZING and results[0].reinitialized
    assert np.array_equal(results[0].T_odom_curr, np.eye(4))
    for i, result in enumerate(results[1:], start=1):
        assert_finite(result)
        assert result.tracking_state == TrackingState.OK, result.message
        assert result.num_inliers >= 30
        # The crop moves right over the texture: the camera translates along +x (its right). The error is what
        # the KeypointNet's ~0.6 px localisation noise allows on a fronto-parallel plane (pitch and y translation
        # trade off), and the reported covariance must account for it: within 3 sigma on every axis.
        expected = np.array([i * seq.tx_per_frame, 0.0, 0.0])
        error = result.T_odom_curr[:3, 3] - expected
        sigma = np.sqrt(np.diag(result.covariance)[:3])
        assert np.all(np.abs(error) < 3 * sigma), (error, sigma)
        assert abs(error[0]) < 0.1 * i * seq.tx_per_frame
        angle = np.degrees(np.arccos(np.clip((np.trace(result.T_odom_curr[:3, :3]) - 1) / 2, -1, 1)))
        assert angle < 2.0
        # T_prev_curr chains into T_odom_curr.
        assert np.allclose(results[i - 1].T_odom_curr @ result.T_prev_curr, result.T_odom_curr, atol=1e-9)
        # Matches index real keypoints and the inliers are a subset.
        assert result.matches.dtype == np.int64 and result.matches.shape[1] == 2
        assert result.matches[:, 0].max() < len(result.previous_keypoints)
        assert result.matches[:, 1].max() < len(result.keypoints)
        assert result.match_inliers.shape == (len(result.matches),)
        # The sideways shift shows in the matched pixels: keyframe x = current x + SHIFT_PX per frame since the
        # keyframe (frames are tracked against the last keyframe, taken at 7 px parallax: every other frame here).
        keyframe_index = round(result.reference_stamp / 0.1)
        assert i - keyframe_index == (1 if i % 2 else 2)
        assert result.keyframe is (i % 2 == 0)
        inl = result.matches[result.match_inliers]
        shift = result.previous_keypoints[inl[:, 0], 0] - result.keypoints[inl[:, 1], 0]
        assert abs(np.median(shift) - 4.0 * (i - keyframe_index)) < 0.5
    # The covariance grows along the trajectory and stays symmetric positive definite.
    traces = [np.trace(r.covariance[:3, :3]) for r in results[1:]]
    assert traces[-1] > traces[0] > 0
    for result in results[1:]:
        assert np.allclose(result.covariance, result.covariance.T)
        assert np.linalg.eigvalsh(result.covariance).min() > 0
    # Keypoints are lifted with the depth: z of every point is the plane depth.
    assert np.allclose(results[-1].points_camera[:, 2], PLANE_DEPTH, rtol=1e-4)


def test_pipeline_lost_on_blank_and_noise_frames_then_recovers(plane_depth_backend, plane_sequence_frames):
    seq = plane_sequence_frames
    pipeline = make_pipeline(plane_depth_backend)
    for i in range(3):
        good = pipeline.process(seq.frames[i], seq.K, 0.1 * i)
    held = good.T_odom_curr.copy()
    blank = np.full_like(seq.frames[0], 128)
    noise = np.random.default_rng(1).integers(0, 256, seq.frames[0].shape, dtype=np.uint8)
    for stamp, frame in ((0.3, blank), (0.4, noise)):
        lost = pipeline.process(frame, seq.K, stamp)
        assert lost.tracking_state == TrackingState.LOST, lost.message
        assert "tracking lost" in lost.message
        assert_finite(lost)
        assert lost.depth.shape == frame.shape[:2]
        assert np.array_equal(lost.T_odom_curr, held)  # pose held ("hold" is the default)
        assert np.array_equal(lost.covariance, np.eye(6) * LOST_VARIANCE)
    # Back to the textured scene, one frame further than the last good one: matched against that good frame, so
    # the pose recovers exactly where the camera is.
    back = pipeline.process(seq.frames[3], seq.K, 0.5)
    assert back.tracking_state in (TrackingState.OK, TrackingState.DEGRADED)
    assert "recovered after 2 lost frame(s)" in back.message
    assert back.reference_stamp == pytest.approx(0.2)
    assert_finite(back)
    # x along the motion; y trades off against pitch on the fronto-parallel plane (see the first test), more so once
    # the window bundle adjustment refines the pose from the plane alone.
    error = back.T_odom_curr[:3, 3] - [3 * seq.tx_per_frame, 0, 0]
    assert abs(error[0]) < 0.05 and np.linalg.norm(error) < 0.15
    assert np.trace(back.covariance) < 1.0  # an ordinary covariance again
    after = pipeline.process(seq.frames[4], seq.K, 0.6)
    assert after.tracking_state == TrackingState.OK and after.message == ""


def test_pipeline_constant_velocity_while_lost_and_reanchoring(plane_depth_backend, plane_sequence_frames):
    seq = plane_sequence_frames
    pipeline = make_pipeline(plane_depth_backend, lost_motion="constant_velocity", max_frames_lost_reference=1)
    for i in range(3):
        good = pipeline.process(seq.frames[i], seq.K, 0.1 * i)
    blank = np.zeros_like(seq.frames[0])
    first = pipeline.process(blank, seq.K, 0.3)
    assert first.tracking_state == TrackingState.LOST and "extrapolated" in first.message
    assert np.allclose(first.T_prev_curr, good.T_prev_curr)
    assert np.allclose(first.T_odom_curr, good.T_odom_curr @ good.T_prev_curr)
    second = pipeline.process(blank, seq.K, 0.4)
    assert "re-anchored" in second.message  # after max_frames_lost_reference lost frames
    assert_finite(second)


def rotating_views(image: np.ndarray, depth: np.ndarray, K: np.ndarray, yaw_deg: float):
    """Image and depth a camera turned in place by ``yaw_deg`` (about its y axis) sees of a scene with ``depth``.

    A pure rotation maps pixels by the homography ``K R K^-1`` whatever the scene's depth, so any depth map makes an
    exact scene; the depth seen at a pixel is the rotated point's z.
    """
    angle = np.radians(yaw_deg)
    R_curr_first = np.array([[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]])
    height, width = depth.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    rays_curr = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(K).T  # (H, W, 3)
    rays_first = rays_curr @ R_curr_first  # R^T applied to each ray
    pixels_first = rays_first @ K.T
    map_x = (pixels_first[..., 0] / pixels_first[..., 2]).astype(np.float32)
    map_y = (pixels_first[..., 1] / pixels_first[..., 2]).astype(np.float32)
    rgb = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    z_first = cv2.remap(depth, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # The point at depth z_first along rays_first (z component 1 after normalising) has z_curr = z_first * s, with
    # s the ratio of the current ray's z to the first ray's z for the same direction.
    scale = rays_curr[..., 2] / (rays_first[..., 2] / np.linalg.norm(rays_first, axis=-1)
                                 * np.linalg.norm(rays_curr, axis=-1))
    return rgb, (z_first * scale).astype(np.float32)


def test_pipeline_flags_pure_rotation_as_degraded(oracle_backend, plane_sequence_frames):
    seq = plane_sequence_frames
    # A scene with depth from 2 to 20 m: under translation near and far points would move differently, so the
    # motion is unambiguous; under rotation they all move alike.
    rng = np.random.default_rng(5)
    depth = np.exp(cv2.resize(rng.uniform(np.log(2.0), np.log(20.0), (4, 10)), (320, 96),
                              interpolation=cv2.INTER_CUBIC)).astype(np.float32)
    views = [rotating_views(seq.frames[0], depth, seq.K, 1.2 * i) for i in range(5)]
    depths = [d for _, d in views]
    pipeline = make_pipeline(oracle_backend(lambda image: depths.pop(0)))
    results = []
    for i, (rgb, _) in enumerate(views):
        result = pipeline.process(rgb, seq.K, i / 30)
        assert_finite(result)
        results.append(result)
    for result in results[1:]:
        assert result.tracking_state == TrackingState.DEGRADED, result.message
        assert "pure rotation" in result.message
    # The rotation itself is measured, and no translation is invented.
    angle = np.degrees(np.arccos(np.clip((np.trace(results[-1].T_odom_curr[:3, :3]) - 1) / 2, -1, 1)))
    assert abs(angle - 4.8) < 0.3
    assert np.linalg.norm(results[-1].T_odom_curr[:3, 3]) < 0.1


def test_pipeline_flags_blurred_frame(plane_depth_backend, plane_sequence_frames):
    seq = plane_sequence_frames
    pipeline = make_pipeline(plane_depth_backend)
    for i in range(6):
        pipeline.process(seq.frames[i], seq.K, 0.1 * i)
    blurred = cv2.GaussianBlur(seq.frames[6], (0, 0), 3.0)
    result = pipeline.process(blurred, seq.K, 0.6)
    assert_finite(result)
    assert result.tracking_state in (TrackingState.DEGRADED, TrackingState.LOST)
    if result.tracking_state == TrackingState.DEGRADED:
        assert "blurred" in result.message
    sharp = pipeline.process(seq.frames[7], seq.K, 0.7)
    assert sharp.tracking_state == TrackingState.OK, sharp.message
