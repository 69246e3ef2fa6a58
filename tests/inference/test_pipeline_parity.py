"""The ONNX Runtime backend computes what PyTorch computes: network outputs and whole pipeline results agree."""

from __future__ import annotations

import numpy as np
import pytest

from priordepth_core.inference import Pipeline, PipelineConfig, TrackingState, load_inference_model
from priordepth_core.inference.backends import OnnxRuntimeBackend, TorchBackend, onnx_cache_dir


@pytest.fixture(scope="module")
def backends(tiny_model_path):
    model = load_inference_model(tiny_model_path)
    onnx = OnnxRuntimeBackend(model, (64, 96), num_threads=1)
    return TorchBackend(load_inference_model(tiny_model_path), (64, 96)), onnx


def test_pipeline_parity_network_outputs_torch_vs_onnxruntime(backends):
    torch_backend, onnx_backend = backends
    import torch

    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    depth_torch, depth_onnx = torch_backend.depth(image), onnx_backend.depth(image)
    assert depth_onnx.shape == depth_torch.shape == (1, 1, 64, 96)
    assert np.allclose(depth_onnx.numpy(), depth_torch.numpy(), rtol=1e-4, atol=1e-6)
    kp_torch, kp_onnx = torch_backend.keypoints(image), onnx_backend.keypoints(image)
    assert kp_onnx["desc"].shape == kp_torch["desc"].shape == (1, 16, 16, 24)
    for key, atol in (("score", 1e-5), ("coord", 1e-3), ("desc", 1e-5)):
        assert np.allclose(kp_onnx[key].numpy(), kp_torch[key].numpy(), rtol=1e-4, atol=atol), key
    # The exported graphs were cached, keyed by the weights and the size.
    assert len(list(onnx_cache_dir().glob("*-64x96-*.onnx"))) >= 2


def test_pipeline_parity_results_torch_vs_onnxruntime(backends, tiny_model_path, plane_sequence_frames):
    torch_backend, onnx_backend = backends
    seq = plane_sequence_frames
    config = PipelineConfig(max_keypoints=64)
    runs = {}
    for name, backend in (("torch", torch_backend), ("onnxruntime", onnx_backend)):
        pipeline = Pipeline(config, tiny_model_path, backend=backend)
        runs[name] = [pipeline.process(frame, seq.K, 0.1 * i) for i, frame in enumerate(seq.frames[:3])]
    for a, b in zip(runs["torch"], runs["onnxruntime"]):
        assert a.depth.shape == (96, 320)
        assert np.allclose(a.depth, b.depth, rtol=1e-4)
        assert a.keypoints.shape == b.keypoints.shape and len(a.keypoints) > 10
        assert np.allclose(a.keypoints, b.keypoints, atol=5e-3)
        assert np.allclose(a.keypoint_scores, b.keypoint_scores, atol=1e-5)
        assert np.allclose(a.points_camera, b.points_camera, rtol=1e-3, atol=1e-4)
        assert np.array_equal(a.matches, b.matches)
        assert a.tracking_state == b.tracking_state
        assert np.allclose(a.T_odom_curr, b.T_odom_curr, atol=1e-3)


def test_pipeline_onnxruntime_from_checkpoint(tiny_model_path, plane_sequence_frames):
    # The public constructor path (cached graphs from the tests above make it quick).
    pipeline = Pipeline.from_checkpoint(tiny_model_path, backend="onnxruntime", num_threads=1)
    result = pipeline.process(plane_sequence_frames.frames[0], plane_sequence_frames.K, 0.0)
    assert pipeline.backend.name == "onnxruntime"
    assert result.tracking_state == TrackingState.INITIALIZING
    assert set(result.timings_ms) >= {"preprocess", "depth", "keypoints", "matching", "pose", "total"}
    assert all(v >= 0 for v in result.timings_ms.values())
    assert result.timings_ms["total"] >= result.timings_ms["depth"] + result.timings_ms["keypoints"]
