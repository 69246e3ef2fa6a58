"""INT8 networks (OpenVINO, ONNX Runtime): the parity gate, the fallback to FP32, and the shipped model's accuracy."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from priordepth_core.config_schema import ConfigError
from priordepth_core.inference import Pipeline, PipelineConfig, load_inference_model
from priordepth_core.inference import backends as backends_module
from priordepth_core.inference.backends import OnnxRuntimeBackend, OpenVinoBackend, TorchBackend, onnx_cache_dir
from priordepth_core.inference.config import resolve_precision
from priordepth_core.inference.model_file import model_path
from priordepth_core.inference.quantize import QUANTISATION_RECIPE, ParityResult, judge, keypoint_parity, photo_batches

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def shipped_driving():
    return load_inference_model(model_path("driving"))


def test_auto_precision_per_backend_and_refused_combinations():
    assert resolve_precision("openvino", "auto") == "int8"
    assert resolve_precision("onnxruntime", "auto") == "int8"
    assert resolve_precision("onnxruntime", "auto", "cuda") == "fp32"
    assert resolve_precision("tensorrt", "auto", "cuda") == "fp16"
    assert resolve_precision("torch", "auto") == "fp32"
    assert PipelineConfig().backend == "openvino" and PipelineConfig().precision == "auto"
    with pytest.raises(ConfigError, match="backend 'torch' runs precision fp32 or fp16"):
        PipelineConfig(backend="torch", precision="int8").validate()
    with pytest.raises(ConfigError, match="backend 'openvino' runs precision fp32 or int8"):
        PipelineConfig(backend="openvino", precision="fp16").validate()


def test_calibration_photos_have_the_network_aspect():
    images = photo_batches(("coffee", "camera"), (96, 320), crops=2)
    assert len(images) == 4
    for image in images:
        assert image.shape == (1, 3, 96, 320) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.05


def test_keypoint_parity_measures_a_known_shift_and_judge_names_the_failure():
    rng = np.random.default_rng(0)
    score = rng.random((1, 1, 12, 40)).astype(np.float32)
    coord = rng.random((1, 2, 12, 40)).astype(np.float32) * 300
    desc = rng.normal(size=(1, 8, 24, 80)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    shifted = coord + np.array([0.6, 0.8], dtype=np.float32).reshape(1, 2, 1, 1)  # 1.0 px everywhere
    measures = keypoint_parity(lambda image: [score, coord, desc], lambda image: [score, shifted, desc],
                               [np.zeros((1, 3, 96, 320), np.float32)])
    assert measures["keypoint_top256_overlap"] == 1.0
    assert measures["keypoint_median_shift_px"] == pytest.approx(1.0, abs=1e-4)
    assert measures["descriptor_median_cosine"] == pytest.approx(1.0, abs=1e-5)
    result = judge(measures)
    assert not result.passed and len(result.failures) == 1
    assert "keypoint_median_shift_px 1 (need <= 0.5)" in result.failures[0]
    assert judge({**measures, "keypoint_median_shift_px": 0.1}).passed


@pytest.mark.parametrize("backend_class", [OpenVinoBackend, OnnxRuntimeBackend])
def test_shipped_model_int8_passes_parity_and_keeps_depth_and_keypoints(backend_class, shipped_driving,
                                                                         street_sequence):
    """The shipped driving model in INT8 at its 96x320 input on rendered street frames (not the parity photos):
    depth abs_rel against the exact depth moves by < 0.01 from FP32, the best keypoints stay and barely move."""
    int8 = backend_class(shipped_driving, (96, 320), num_threads=1, precision="int8")
    assert int8.precisions == {"depth": "int8", "keypoints": "int8"}
    assert all(result.passed for result in int8.parity.values())
    assert list(onnx_cache_dir().glob(f"*-96x320-*{QUANTISATION_RECIPE}.onnx")), "the INT8 graphs are cached"
    reference = TorchBackend(shipped_driving, (96, 320))
    _, rendered = street_sequence
    abs_rel = {"fp32": [], "int8": []}
    shifts, overlaps = [], []
    for rgb, depth_true in rendered:
        image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
        valid = np.isfinite(depth_true) & (depth_true > 0) & (depth_true < 80)
        for name, backend in (("fp32", reference), ("int8", int8)):
            depth = backend.depth(image)[0, 0].numpy()[valid]
            depth = depth * np.median(depth_true[valid]) / np.median(depth)
            abs_rel[name].append(np.mean(np.abs(depth - depth_true[valid]) / depth_true[valid]))
        kp_fp32, kp_int8 = reference.keypoints(image), int8.keypoints(image)
        best = torch.argsort(kp_fp32["score"].flatten(), descending=True)[:128]
        best_int8 = torch.argsort(kp_int8["score"].flatten(), descending=True)[:128]
        overlaps.append(len(np.intersect1d(best.numpy(), best_int8.numpy())) / 128)
        shifts.append((kp_fp32["coord"].flatten(2)[0][:, best] - kp_int8["coord"].flatten(2)[0][:, best])
                      .norm(dim=0).numpy())
    assert abs(np.mean(abs_rel["int8"]) - np.mean(abs_rel["fp32"])) < 0.01
    assert np.mean(overlaps) > 0.9
    assert np.median(np.concatenate(shifts)) < 0.3


def test_failed_parity_runs_the_graph_in_fp32_and_says_so(tiny_model_path, monkeypatch, caplog):
    failing = ParityResult({"depth_median_rel_diff": 0.5}, ("depth_median_rel_diff 0.5 (need <= 0.05)",))
    monkeypatch.setattr(backends_module, "int8_parity", lambda *args, **kwargs: failing)
    model = load_inference_model(tiny_model_path)
    with caplog.at_level(logging.WARNING, logger="priordepth_core.inference.backends"):
        backend = OpenVinoBackend(model, (64, 96), num_threads=1, precision="int8")
    assert backend.precisions == {"depth": "fp32", "keypoints": "fp32"}
    assert "fails the parity check" in caplog.text and "depth_median_rel_diff 0.5" in caplog.text
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(backend.depth(image), TorchBackend(model, (64, 96)).depth(image), rtol=1e-4,
                               atol=1e-5)


def test_openvino_fp32_matches_torch_and_refuses_cuda(tiny_model_path):
    model = load_inference_model(tiny_model_path)
    backend = OpenVinoBackend(model, (64, 96), num_threads=1, precision="fp32")
    reference = TorchBackend(model, (64, 96))
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(backend.depth(image), reference.depth(image), rtol=1e-4, atol=1e-5)
    for key, value in reference.keypoints(image).items():
        torch.testing.assert_close(backend.keypoints(image)[key], value, rtol=1e-4, atol=1e-3)
    with pytest.raises(backends_module.BackendUnavailableError, match=r"openvino.*CPU"):
        OpenVinoBackend(model, (64, 96), device="cuda")


def test_default_pipeline_runs_openvino_int8(plane_sequence_frames):
    pipeline = Pipeline(PipelineConfig(num_threads=1))
    assert pipeline.backend.name == "openvino"
    assert pipeline.backend.precisions == {"depth": "int8", "keypoints": "int8"}
    sequence = plane_sequence_frames
    results = [pipeline.process(frame, sequence.K, 0.1 * index) for index, frame in enumerate(sequence.frames[:3])]
    assert all(np.isfinite(r.depth).mean() > 0.99 for r in results)
    assert results[-1].num_inliers > 20



def test_int8_keypoints_keeps_the_depth_in_fp32(tiny_model_path, monkeypatch):
    passing = ParityResult({"depth_median_rel_diff": 0.0}, ())
    monkeypatch.setattr(backends_module, "int8_parity", lambda *args, **kwargs: passing)
    model = load_inference_model(tiny_model_path)
    backend = OpenVinoBackend(model, (64, 96), num_threads=1, precision="int8_keypoints")
    assert backend.precisions == {"depth": "fp32", "keypoints": "int8"} and set(backend.parity) == {"keypoints"}
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(backend.depth(image), TorchBackend(model, (64, 96)).depth(image), rtol=1e-4, atol=1e-5)
    assert resolve_precision("torch", "auto") == "fp32"
    with pytest.raises(ConfigError, match="backend 'torch' runs precision fp32 or fp16"):
        PipelineConfig(backend="torch", precision="int8_keypoints").validate()
