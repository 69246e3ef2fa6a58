"""Model files and the Pipeline with the light descriptor head; files without ``descriptor_head`` stay KP2D."""

from __future__ import annotations

import numpy as np
import torch

from priordepth_core.inference import Pipeline, PipelineConfig, load_inference_model
from priordepth_core.inference.backends import OnnxRuntimeBackend, TorchBackend
from priordepth_core.inference.model_file import _build_keypoint_net, default_checkpoint_path, load_keypoint_net_file
from priordepth_core.models import KeypointNet


def _light_checkpoint(path, dim: int = 16) -> KeypointNet:
    torch.manual_seed(1)
    net = KeypointNet(descriptor_dim=dim, lite=True, descriptor_head="light")
    torch.save({"model": net.state_dict(), "config": {"descriptor_dim": dim, "lite": True,
                                                      "upsample_descriptors": True, "descriptor_head": "light"},
                "step": 2}, path)
    return net


def test_old_configs_without_descriptor_head_build_the_kp2d_head(tmp_path):
    net = _build_keypoint_net({"descriptor_dim": 16, "lite": True, "upsample_descriptors": True})
    assert net.descriptor_head == "kp2d" and hasattr(net, "descriptor_out")
    path = tmp_path / "old.pt"
    torch.save({"model": KeypointNet(descriptor_dim=16, lite=True).state_dict(),
                "config": {"descriptor_dim": 16, "lite": True}, "step": 1}, path)
    net, config, _ = load_keypoint_net_file(path)
    assert net.descriptor_head == "kp2d" and "descriptor_head" not in config
    shipped = load_inference_model(default_checkpoint_path())
    assert shipped.keypoint_net.descriptor_head == "kp2d" and "descriptor_head" not in shipped.keypoint_config


def test_light_keypoint_checkpoint_runs_in_the_pipeline(tmp_path, tiny_model_path, plane_sequence_frames):
    path = tmp_path / "light.pt"
    trained = _light_checkpoint(path)
    model = load_inference_model(tiny_model_path, path)
    assert model.keypoint_config["descriptor_head"] == "light"
    assert model.keypoint_net.descriptor_head == "light"
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(model.keypoint_net.state_dict()[name], value, msg=name)
    # The exported graph computes what PyTorch computes.
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    kp_torch = TorchBackend(model, (64, 96)).keypoints(image)
    kp_onnx = OnnxRuntimeBackend(load_inference_model(tiny_model_path, path), (64, 96), num_threads=1).keypoints(image)
    for key, atol in (("score", 1e-5), ("coord", 1e-3), ("desc", 1e-5)):
        assert np.allclose(kp_onnx[key].numpy(), kp_torch[key].numpy(), rtol=1e-4, atol=atol), key
    seq = plane_sequence_frames
    pipeline = Pipeline(PipelineConfig(max_keypoints=64, keypoint_checkpoint=str(path)), tiny_model_path)
    assert pipeline.model.keypoint_net.descriptor_head == "light"
    results = [pipeline.process(frame, seq.K, 0.1 * i) for i, frame in enumerate(seq.frames[:3])]
    assert all(len(r.keypoints) > 10 for r in results)
    assert results[-1].matches is not None and len(results[-1].matches) > 0


def test_keypoint_evaluator_reads_a_packed_model():
    from priordepth_core.evaluate.keypoint_cli import load_keypoint_detector

    detector = load_keypoint_detector(default_checkpoint_path(), top_k=20)
    image = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    keypoints, descriptors, _, norm = detector.detect(image)
    assert norm == "l2" and descriptors.shape[1] == 128 and len(keypoints) == len(descriptors) > 0
