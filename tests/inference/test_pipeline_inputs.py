"""Bad inputs to the Pipeline raise ValueError naming the problem and leave its state untouched; re-initialisation
on image-size and intrinsics changes; reset(); configuration and backend errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from priordepth_core.inference import (
    BackendUnavailableError,
    Pipeline,
    PipelineConfig,
    TrackingState,
    default_checkpoint_path,
)


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline(PipelineConfig(), default_checkpoint_path())


def test_pipeline_rejects_bad_frames_without_changing_state(pipeline, plane_sequence_frames):
    seq = plane_sequence_frames
    pipeline.reset()
    first = pipeline.process(seq.frames[0], seq.K, 0.0)
    assert first.reinitialized and first.message.startswith("reset")
    image, K = seq.frames[1], seq.K
    bad_calls = [
        ((image.astype(np.float32), K, 0.1), "uint8"),
        ((image[..., 0], K, 0.1), r"\(H, W, 3\)"),
        ((np.concatenate([image, image[..., :1]], axis=2), K, 0.1), r"\(H, W, 3\)"),
        ((image[:4, :4], K, 0.1), "too small"),
        ((image.tolist(), K, 0.1), "numpy array"),
        ((image, K[:2], 0.1), r"\(3, 3\)"),
        ((image, np.where(np.eye(3, dtype=bool), np.nan, K), 0.1), "non-finite"),
        ((image, np.diag([0.0, 180.0, 1.0]), 0.1), "fx, fy > 0"),
        ((image, K * 2, 0.1), "pinhole"),  # last row no longer (0, 0, 1)
        ((image, "K", 0.1), r"\(3, 3\)"),
        ((image, K, float("nan")), "finite"),
        ((image, K, "noon"), "seconds"),
    ]
    for args, match in bad_calls:
        with pytest.raises(ValueError, match=match):
            pipeline.process(*args)
    # Nothing above touched the state: the next good frame tracks against the first one.
    second = pipeline.process(seq.frames[1], seq.K, 0.1)
    assert not second.reinitialized
    assert second.reference_stamp == 0.0
    assert second.tracking_state in (TrackingState.OK, TrackingState.DEGRADED), second.message


def test_pipeline_reinitialises_on_resolution_and_intrinsics_change(plane_depth_backend, plane_sequence_frames):
    import cv2

    seq = plane_sequence_frames
    pipeline = Pipeline(PipelineConfig(), default_checkpoint_path(), backend=plane_depth_backend)
    for i in range(3):
        last = pipeline.process(seq.frames[i], seq.K, 0.1 * i)
    assert last.tracking_state == TrackingState.OK
    # The camera switches to twice the resolution mid-stream (K scaled accordingly).
    K2 = seq.K.copy()
    K2[:2] *= 2
    K2[0, 2], K2[1, 2] = (seq.K[0, 2] + 0.5) * 2 - 0.5, (seq.K[1, 2] + 0.5) * 2 - 0.5
    big = [cv2.resize(f, (640, 192), interpolation=cv2.INTER_LINEAR) for f in seq.frames]
    switched = pipeline.process(big[3], K2, 0.3)
    assert switched.reinitialized
    assert switched.tracking_state == TrackingState.INITIALIZING
    assert "image size changed from 320x96 to 640x192" in switched.message
    assert switched.depth.shape == (192, 640) and np.isfinite(switched.depth).all()
    assert switched.keypoints[:, 0].max() > 320  # keypoints at the new input resolution
    assert len(switched.matches) == 0 and len(switched.previous_keypoints) == 0
    assert np.array_equal(switched.T_odom_curr, last.T_odom_curr)  # keep_pose_on_reinit (default)
    assert np.array_equal(switched.T_prev_curr, np.eye(4))
    after = pipeline.process(big[4], K2, 0.4)
    assert not after.reinitialized and after.tracking_state == TrackingState.OK, after.message
    step = np.linalg.norm(after.T_odom_curr[:3, 3] - switched.T_odom_curr[:3, 3])
    assert step == pytest.approx(seq.tx_per_frame, rel=0.3)  # tracking goes on at the new size
    # Same size, other intrinsics (a zoom): re-initialised as well.
    K3 = K2.copy()
    K3[0, 0] *= 1.1
    zoomed = pipeline.process(big[5], K3, 0.5)
    assert zoomed.reinitialized and "intrinsics changed" in zoomed.message
    # reset(): a new trajectory at the identity.
    pipeline.reset()
    fresh = pipeline.process(big[6], K3, 0.6)
    assert fresh.reinitialized and fresh.message.startswith("reset")
    assert np.array_equal(fresh.T_odom_curr, np.eye(4))


def test_pipeline_reinit_can_restart_at_identity(plane_depth_backend, plane_sequence_frames):
    seq = plane_sequence_frames
    pipeline = Pipeline(PipelineConfig(keep_pose_on_reinit=False), default_checkpoint_path(),
                        backend=plane_depth_backend)
    pipeline.process(seq.frames[0], seq.K, 0.0)
    moved = pipeline.process(seq.frames[2], seq.K, 0.1)
    assert np.linalg.norm(moved.T_odom_curr[:3, 3]) == pytest.approx(2 * seq.tx_per_frame, rel=0.2)
    K = seq.K.copy()
    K[1, 1] *= 1.05
    restarted = pipeline.process(seq.frames[3], K, 0.2)
    assert restarted.reinitialized and "at the identity" in restarted.message
    assert np.array_equal(restarted.T_odom_curr, np.eye(4))


@pytest.mark.parametrize("field, value, match", [
    ("backend", "tflite", "backend"),
    ("device", "gpu", "device"),
    ("input_height", 100, "multiple of 32"),
    ("input_width", 0, "both"),  # input_height set below, width not
    ("scale_mode", "metric", "scale_mode"),
    ("camera_height_m", -1.0, "camera_height_m"),
    ("max_keypoints", 4, "max_keypoints"),
    ("min_inliers", 3, "min_inliers"),
    ("ransac_threshold_px", 0.0, "ransac_threshold_px"),
    ("match_ratio", 1.5, "match_ratio"),
    ("lost_motion", "drift", "lost_motion"),
    ("precision", "int4", "precision"),
    ("precision", "fp16", "precision"),  # the default backend, openvino, runs fp32 or int8
])
def test_pipeline_config_rejects_bad_values(field, value, match):
    changes = {field: value}
    if field == "input_width":
        changes["input_height"] = 96
    with pytest.raises(ValueError, match=match):
        PipelineConfig().replace(**changes)
    with pytest.raises(ValueError, match="unknown PipelineConfig field"):
        PipelineConfig().replace(camera_hieght_m=1.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error path of a machine without CUDA")
def test_pipeline_tensorrt_without_cuda_says_so():
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        Pipeline.from_checkpoint(backend="tensorrt", device="cuda")
    with pytest.raises(BackendUnavailableError, match="CUDA device"):
        Pipeline.from_checkpoint(backend="tensorrt", device="cpu")


def test_pipeline_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Pipeline.from_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"is not a PriorDepth checkpoint or model: it is not a file written by "
                                         r"torch\.save; expected a packed inference model"):
        Pipeline.from_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match=r"is not a PriorDepth checkpoint or model \(it holds keys \['weights'\]\); "
                                         r"expected a packed inference model"):
        Pipeline.from_checkpoint(other)
