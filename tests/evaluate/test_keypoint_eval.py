import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from priordepth_core.evaluate.__main__ import main as evaluate_main
from priordepth_core.evaluate.keypoint_cli import load_keypoint_detector
from priordepth_core.evaluate.keypoint_eval import (
    KeypointNetDetector,
    OrbDetector,
    SiftDetector,
    evaluate_pair,
    evaluate_synthetic_pairs,
    load_graf_pair,
    warp_pair,
)
from priordepth_core.models.keypoint_net import KeypointNet
from priordepth_core.train.checkpoint import save_atomic

torch.set_num_threads(1)
cv2.setNumThreads(1)


def _photo() -> np.ndarray:
    """A held-out real photo (scikit-image's coffee, not a training image), 400x600 RGB."""
    import skimage.data

    return skimage.data.coffee()


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((height // 6 + 2, width // 6 + 2, 3)).astype(np.float32)
    return (cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


def _random_net() -> KeypointNet:
    torch.manual_seed(0)
    return KeypointNet(descriptor_dim=16, lite=True).eval()


@pytest.mark.parametrize("detector", [OrbDetector(1000), SiftDetector(1000)], ids=["orb", "sift"])
def test_opencv_detectors_on_an_exact_homography_warp(detector):
    image = _photo()
    warped, H = warp_pair(image, torch.Generator().manual_seed(3))
    result = evaluate_pair(detector, image, warped, H)
    assert result["repeatability"] > 0.4
    assert result["localization_error"] < 1.5
    assert result["correctness_5"] == 1.0  # KP2D's C5: mean corner error within 5 px
    assert result["matching_score"] > 0.25
    assert result["num_inliers"] >= 50


def test_detector_output_format():
    image = _photo()
    for detector, width, dtype, norm in [(OrbDetector(300), 32, np.uint8, "hamming"),
                                         (SiftDetector(300), 128, np.float32, "l2"),
                                         (KeypointNetDetector(_random_net(), top_k=200), 16, np.float32, "l2")]:
        points, desc, scores, got_norm = detector.detect(image)
        assert points.ndim == 2 and points.shape[1] == 2 and 100 <= len(points) <= 310
        assert desc.shape == (len(points), width) and desc.dtype == dtype
        assert scores.shape == (len(points),) and got_norm == norm
        assert points.min() >= 0 and points[:, 0].max() <= 599 and points[:, 1].max() <= 399


def test_keypoint_net_identity_pair_at_a_size_not_multiple_of_8():
    image = _texture(100, 130)
    detector = KeypointNetDetector(_random_net(), top_k=300)
    assert detector.network_size(100, 130) == (104, 128)
    result = evaluate_pair(detector, image, image, np.eye(3), top_k=300, repeatability_top_k=300)
    assert result["repeatability"] == pytest.approx(1.0)
    assert result["localization_error"] == pytest.approx(0.0, abs=1e-9)
    assert result["correctness_1"] == 1.0 and result["matching_score"] > 0.95


class _BlobFinder(nn.Module):
    """Stands in for KeypointNet: one keypoint at the intensity centroid of the bright blob of the input."""

    def forward(self, image):
        B, _, H, W = image.shape
        weight = (image.mean(1) - 0.5).clamp(min=0)  # (B, H, W)
        ys, xs = torch.meshgrid(torch.arange(H, dtype=image.dtype), torch.arange(W, dtype=image.dtype), indexing="ij")
        total = weight.sum((1, 2))
        centre = torch.stack([(weight * xs).sum((1, 2)) / total, (weight * ys).sum((1, 2)) / total], 1)  # (B, 2)
        score = torch.zeros(B, 1, H // 8, W // 8)
        score[:, :, 1, 1] = 1.0
        coord = centre.view(B, 2, 1, 1).expand(B, 2, H // 8, W // 8).contiguous()
        desc = torch.nn.functional.normalize(torch.ones(B, 4, H // 4, W // 4), dim=1)
        return {"score": score, "coord": coord, "desc": desc}


def test_keypoint_net_coordinates_map_back_to_the_original_image():
    height, width, x0, y0 = 100, 130, 110.0, 80.0  # network runs at 104x128: unmapped points would be ~2-3 px off
    ys, xs = np.mgrid[0:height, 0:width]
    blob = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * 3.0 ** 2))
    image = np.repeat((blob * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    points, _, _, _ = KeypointNetDetector(_BlobFinder(), top_k=5).detect(image)
    assert points.shape == (1, 2)
    np.testing.assert_allclose(points[0], [x0, y0], atol=0.3)


def test_synthetic_pairs_are_reproducible_and_averaged():
    detector = OrbDetector(500)
    images = [_texture(120, 160, seed=1), _texture(128, 144, seed=2)]
    first = evaluate_synthetic_pairs(detector, images, num_pairs=3, seed=5)
    again = evaluate_synthetic_pairs(detector, images, num_pairs=3, seed=5)
    assert first["num_pairs"] == 3
    for key in ("repeatability", "matching_score", "correctness_3", "num_matches"):
        assert first[key] == again[key]
        assert 0 <= first["repeatability"] <= 1
    with pytest.raises(ValueError, match="num_pairs"):
        evaluate_synthetic_pairs(detector, images, num_pairs=0)


def test_checkpoint_round_trip_and_errors(tmp_path):
    net = _random_net()
    path = tmp_path / "kp.pt"
    save_atomic({"model": net.state_dict(), "config": {"descriptor_dim": 16, "lite": True}, "step": 0}, path)
    image = _texture(64, 96)
    expected = KeypointNetDetector(net, top_k=50).detect(image)
    loaded = load_keypoint_detector(path, top_k=50).detect(image)
    np.testing.assert_allclose(loaded[0], expected[0])
    np.testing.assert_allclose(loaded[1], expected[1], atol=1e-6)

    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        load_keypoint_detector(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a KeypointNet checkpoint"):
        load_keypoint_detector(tmp_path / "other.pt")
    save_atomic({"model": net.state_dict(), "config": {"descriptor_dim": 32, "lite": True}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load_keypoint_detector(tmp_path / "bad.pt")


def test_bad_images_raise_clear_errors():
    detector = SiftDetector()
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="numpy array"):
        detector.detect(torch.zeros(64, 64, 3))
    with pytest.raises(ValueError, match="same size"):
        evaluate_pair(detector, _texture(64, 64), _texture(64, 80), np.eye(3))
    with pytest.raises(ValueError, match="invertible"):
        evaluate_pair(detector, _texture(64, 64), _texture(64, 64), np.zeros((3, 3)))


def test_missing_graf_folder_is_named(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_graf_pair(tmp_path)
    assert evaluate_main(["keypoints", "--methods", "orb", "--graf", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err
    assert evaluate_main(["keypoints", "--methods", "ours", "--graf", str(tmp_path)]) == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_graf_pair_loads_with_its_homography(shared_data):
    image1, image3, H = load_graf_pair(shared_data / "homography_graf")
    assert image1.shape == image3.shape == (640, 800, 3) and image1.dtype == np.uint8
    np.testing.assert_allclose(H[0], [0.76285898, -0.29922929, 225.67123], rtol=1e-6)


def test_sift_on_graf1_to_graf3(shared_data):
    image1, image3, H = load_graf_pair(shared_data / "homography_graf")
    result = evaluate_pair(SiftDetector(1000), image1, image3, H)
    # graf1 -> graf3 is a strong viewpoint change; SIFT still finds the plane (measured: repeatability 0.47,
    # matching score 0.27, corner error 5.3 px).
    assert result["repeatability"] > 0.3
    assert result["matching_score"] > 0.15
    assert result["num_inliers"] >= 100 and result["mean_corner_error"] < 15.0


def test_keypoints_cli_writes_tables_and_json(shared_data, tmp_path, capsys):
    net = _random_net()
    checkpoint = tmp_path / "kp.pt"
    save_atomic({"model": net.state_dict(), "config": {"descriptor_dim": 16, "lite": True}, "step": 0}, checkpoint)
    out = tmp_path / "eval.json"
    code = evaluate_main(["keypoints", "--checkpoint", str(checkpoint), "--graf", str(shared_data / "homography_graf"),
                          "--methods", "orb", "ours", "--synthetic-pairs", "1", "--synthetic-images", "graf1",
                          "--top-k", "300", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| orb |" in printed and "| ours |" in printed and "Mikolajczyk" in printed
    report = json.loads(out.read_text())
    assert set(report["graf1_to_graf3"]) == {"orb", "ours"}
    assert 0 <= report["graf1_to_graf3"]["orb"]["repeatability"] <= 1
    assert report["synthetic"]["metrics"]["orb"]["num_pairs"] == 1
