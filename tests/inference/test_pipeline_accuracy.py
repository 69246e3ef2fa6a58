"""The shipped model through the Pipeline on a short rendered street sequence with exact ground truth: trajectory
and depth accuracy, and the camera-height metric scale."""

from __future__ import annotations

import numpy as np
import pytest

from priordepth_core.evaluate import absolute_trajectory_error, compute_depth_metrics
from priordepth_core.inference import Pipeline, PipelineConfig, TrackingState, load_inference_model, model_path


def _run(street_sequence, **config):
    sequence, frames = street_sequence
    pipeline = Pipeline(PipelineConfig(**config))
    return [pipeline.process(rgb, sequence.K, stamp) for (rgb, _), stamp in zip(frames, sequence.trajectory.stamps)]


def _rotation_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def test_pipeline_pose_and_depth_accuracy_on_street(street_sequence):
    sequence, frames = street_sequence
    T_world = sequence.trajectory.T_world_cam
    results = _run(street_sequence)
    assert all(r.tracking_state in (TrackingState.OK, TrackingState.DEGRADED) for r in results[1:])
    assert all(r.scale_source == "relative" for r in results)
    estimate = np.stack([r.T_odom_curr for r in results])
    path = np.sum(np.linalg.norm(np.diff(T_world[:, :3, 3], axis=0), axis=1))
    ate = absolute_trajectory_error(estimate, T_world, "sim3")
    # Measured 0.17 m over this 3.5 m path (5 %); the bound leaves room for RANSAC's randomness only.
    assert ate["rmse"] < 0.1 * path
    for i in range(1, len(results)):
        T_true = np.linalg.inv(T_world[i - 1]) @ T_world[i]
        assert _rotation_deg(np.linalg.inv(T_true) @ results[i].T_prev_curr) < 2.0
        # Moving forward: z of the relative motion points ahead (in the network's scale).
        assert results[i].T_prev_curr[2, 3] > 0
    # Depth (median-scaled, MonoDepth2 protocol): measured 0.27 on these frames (the packaged run's test split:
    # 0.23); a constant depth or the untrained network score 0.60 (docs/experiments.md).
    abs_rel = [compute_depth_metrics(depth, r.depth, crop=None)["abs_rel"] for (_, depth), r in zip(frames, results)]
    assert np.mean(abs_rel) < 0.4


def test_pipeline_camera_height_gives_metric_scale(street_sequence):
    sequence, frames = street_sequence
    results = _run(street_sequence, scale_mode="camera_height", camera_height_m=1.65)
    assert all(r.scale_source == "camera_height" for r in results)
    # The network's own scale is not metric (its evaluation's median ratio gt/pred is 4.8); the ground plane fixes it.
    ratios = [np.median(depth[depth > 0] / r.depth[depth > 0]) for (_, depth), r in zip(frames, results)]
    assert 0.67 < np.median(ratios) < 1.5
    estimate = np.stack([r.T_odom_curr for r in results])
    ate = absolute_trajectory_error(estimate, sequence.trajectory.T_world_cam, "sim3")
    # Metric translation, not the network's scale (measured on these 8 frames: Sim(3) scale 1.15,
    # depth gt/pred 0.87).
    assert ate["scale"] == pytest.approx(1.0, abs=0.35)
    # The applied scale is the network's offset from metric that its recorded evaluation measured.
    network_ratio = load_inference_model(model_path(None)).provenance["metrics"]["metrics"]["ratio_median"]
    assert 0.67 < np.median([r.scale for r in results]) / network_ratio < 1.5
