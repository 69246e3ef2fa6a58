"""Tracking-state transitions of the Pipeline with keyframes and the window bundle adjustment on (the defaults): a
loss relocalises on the last keyframe, a degraded pose carries a larger covariance, and time jumps reset.

Exact plane frames (conftest.py: 4 px sideways a frame, exact depth from the oracle backend), shipped KeypointNet.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from priordepth_core.inference import LOST_VARIANCE, Pipeline, PipelineConfig, TrackingState
from priordepth_core.inference.model_file import default_checkpoint_path


def make_pipeline(backend, **overrides) -> Pipeline:
    return Pipeline(PipelineConfig(**overrides), default_checkpoint_path(), backend=backend)


def test_lost_then_relocalised_on_the_last_keyframe(plane_depth_backend, plane_sequence_frames):
    seq = plane_sequence_frames
    pipeline = make_pipeline(plane_depth_backend, keyframe_parallax_px=8.0)
    results = [pipeline.process(seq.frames[i], seq.K, 0.1 * i) for i in range(4)]
    # 8 px parallax makes frames 0 and 2 keyframes; frame 3 is tracked against frame 2.
    assert [r.keyframe for r in results] == [True, False, True, False]
    assert results[3].reference_stamp == pytest.approx(0.2)
    lost = pipeline.process(np.full_like(seq.frames[0], 128), seq.K, 0.4)
    assert lost.tracking_state == TrackingState.LOST and not lost.keyframe
    assert np.array_equal(lost.covariance, np.eye(6) * LOST_VARIANCE)
    back = pipeline.process(seq.frames[5], seq.K, 0.5)
    assert back.tracking_state in (TrackingState.OK, TrackingState.DEGRADED)
    assert "recovered after 1 lost frame(s)" in back.message
    assert back.reference_stamp == pytest.approx(0.2)  # the last keyframe, not the last tracked frame (0.3)
    # Along the motion the pose is where the camera is; across it (y) a fronto-parallel plane trades y translation
    # for pitch (as in test_pipeline_tracking.py), hence the looser bound.
    error = back.T_odom_curr[:3, 3] - [5 * seq.tx_per_frame, 0, 0]
    assert abs(error[0]) < 0.05 and np.linalg.norm(error) < 0.15
    assert back.keyframe  # 12 px from the keyframe


def test_degraded_pose_has_a_larger_covariance(plane_depth_backend, plane_sequence_frames):
    seq = plane_sequence_frames

    def frame_6(blur: bool):  # after the 5 frames the blur test needs as its history
        pipeline = make_pipeline(plane_depth_backend, keyframe_parallax_px=0.0, blur_ratio=0.9)
        for i in range(6):
            pipeline.process(seq.frames[i], seq.K, 0.1 * i)
        frame = cv2.GaussianBlur(seq.frames[6], (0, 0), 1.5) if blur else seq.frames[6]
        return pipeline.process(frame, seq.K, 0.6)

    sharp, blurred = frame_6(False), frame_6(True)
    assert sharp.tracking_state == TrackingState.OK
    assert blurred.tracking_state == TrackingState.DEGRADED and "blurred" in blurred.message
    # The inflation (x10) dominates the change of the residuals between the sharp and the slightly blurred frame.
    assert np.trace(blurred.relative_covariance) > 3 * np.trace(sharp.relative_covariance)


def test_time_jump_back_starts_a_new_trajectory(plane_depth_backend, plane_sequence_frames):
    seq = plane_sequence_frames
    pipeline = make_pipeline(plane_depth_backend)
    for i in range(3):
        before = pipeline.process(seq.frames[i], seq.K, 10 + 0.1 * i)
    assert np.linalg.norm(before.T_odom_curr[:3, 3]) > 0.2
    jumped = pipeline.process(seq.frames[3], seq.K, 9.0)
    assert jumped.reinitialized and jumped.tracking_state == TrackingState.INITIALIZING
    assert "time jumped back by 1.200 s" in jumped.message
    assert np.array_equal(jumped.T_odom_curr, np.eye(4))
    after = pipeline.process(seq.frames[4], seq.K, 9.1)
    assert after.tracking_state == TrackingState.OK, after.message
    assert abs(after.T_odom_curr[0, 3] - seq.tx_per_frame) < 0.2 * seq.tx_per_frame


@pytest.mark.parametrize("max_gap", [1.0, 0.0])
def test_time_gap_reinitialises_tracking_at_the_last_pose(plane_depth_backend, plane_sequence_frames, max_gap):
    seq = plane_sequence_frames
    pipeline = make_pipeline(plane_depth_backend, max_time_gap_s=max_gap)
    for i in range(3):
        before = pipeline.process(seq.frames[i], seq.K, 0.1 * i)
    gap = pipeline.process(seq.frames[3], seq.K, 5.0)
    if max_gap:
        assert gap.reinitialized and "time jumped forward by 4.800 s" in gap.message
        assert gap.tracking_state == TrackingState.INITIALIZING
        assert np.array_equal(gap.T_odom_curr, before.T_odom_curr)  # keep_pose_on_reinit
    else:  # no gap limit: tracked across the gap
        assert not gap.reinitialized and gap.tracking_state == TrackingState.OK, gap.message
        assert abs(gap.T_odom_curr[0, 3] - 3 * seq.tx_per_frame) < 0.1 * 3 * seq.tx_per_frame
