import cv2
import numpy as np
import pytest

from priordepth_core.evaluate.keypoint_metrics import (
    homography_correctness,
    matching_score,
    repeatability,
    warp_keypoints,
)

SHAPE = (480, 640)
H_TRUE = np.array([[0.9, 0.05, 20.0], [-0.03, 0.95, 15.0], [1e-5, -2e-5, 1.0]])


def _scene(n=400, seed=0):
    """Keypoints of image 1 whose warp lies inside image 2, their exact warps, and random unit descriptors."""
    rng = np.random.default_rng(seed)
    points1 = rng.uniform([0, 0], [SHAPE[1] - 1, SHAPE[0] - 1], size=(4 * n, 2))
    inside = np.all((warp_keypoints(points1, H_TRUE) >= 0) & (warp_keypoints(points1, H_TRUE) <= [639, 479]), 1)
    points1 = points1[inside][:n]
    descriptors = rng.normal(size=(n, 32)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    return points1, warp_keypoints(points1, H_TRUE), descriptors, rng


def test_warp_keypoints_matches_opencv():
    points = np.random.default_rng(0).uniform(0, 500, size=(10, 2))
    expected = cv2.perspectiveTransform(points[None], H_TRUE)[0]
    np.testing.assert_allclose(warp_keypoints(points, H_TRUE), expected, atol=1e-10)


def test_perfect_detections_and_descriptors():
    points1, points2, desc, _ = _scene()
    rep = repeatability(points1, points2, H_TRUE, SHAPE, top_k=1000)
    assert rep["repeatability"] == 1.0 and rep["localization_error"] == pytest.approx(0.0, abs=1e-9)
    assert rep["num_keypoints1"] == rep["num_keypoints2"] == 400
    hom = homography_correctness(points1, desc, points2, desc, H_TRUE, SHAPE)
    assert hom["correctness_1"] == hom["correctness_3"] == hom["correctness_5"] == 1.0
    # OpenCV fits in float32 coordinates: 640 px carries ~6e-5 px of rounding.
    assert hom["mean_corner_error"] < 1e-4 and hom["num_matches"] == 400
    assert matching_score(points1, desc, points2, desc, H_TRUE, SHAPE)["matching_score"] == 1.0


def test_localisation_noise_and_missing_detections():
    points1, points2, desc, rng = _scene(seed=1)
    noisy = points2 + rng.normal(scale=1.0, size=points2.shape)
    rep = repeatability(points1, noisy, H_TRUE, SHAPE, top_k=1000)
    # |N(0, I_2)| has mean sqrt(pi / 2) = 1.25 px and exceeds 3 px with probability exp(-4.5) = 1.1 %.
    assert rep["repeatability"] > 0.97
    assert rep["localization_error"] == pytest.approx(np.sqrt(np.pi / 2), rel=0.15)
    # Keypoints 20 px apart (>= 17 px after the warp), so a lost detection has no stand-in within 3 px.
    grid = np.stack(np.meshgrid(np.arange(100, 540, 20.0), np.arange(100, 380, 20.0)), -1).reshape(-1, 2)
    half = repeatability(grid, warp_keypoints(grid, H_TRUE)[::2], H_TRUE, SHAPE, top_k=1000)
    n = len(grid)
    assert half["repeatability"] == pytest.approx(2 * len(grid[::2]) / (n + len(grid[::2])))


def test_top_k_uses_the_scores():
    points1, points2, _, rng = _scene(seed=2)
    scores1 = rng.random(len(points1))
    shuffled = rng.permutation(len(points2))
    # Image 2 keeps 100 points; ranking image 1 by the same scores keeps exactly their partners.
    rep = repeatability(points1, points2[shuffled], H_TRUE, SHAPE, scores1, scores1[shuffled], top_k=100)
    assert rep["repeatability"] == 1.0
    rep = repeatability(points1, points2[shuffled], H_TRUE, SHAPE, scores1, -scores1[shuffled], top_k=100)
    assert rep["repeatability"] < 0.2


def test_wrong_descriptors_lower_matching_score_not_ransac():
    points1, points2, desc, rng = _scene(seed=3)
    desc2 = desc.copy()
    swapped = rng.permutation(200)
    desc2[:200] = desc[swapped]  # the first half matches the wrong keypoints (a few by chance the right one)
    ms = matching_score(points1, desc, points2, desc2, H_TRUE, SHAPE)["matching_score"]
    assert 0.45 < ms < 0.56
    hom = homography_correctness(points1, desc, points2, desc2, H_TRUE, SHAPE)
    assert hom["correctness_1"] == 1.0  # RANSAC rejects the wrong half


def test_noisy_keypoints_fail_c1_but_pass_c5():
    points1, points2, desc, rng = _scene(seed=4)
    noisy = points2 + rng.normal(scale=2.0, size=points2.shape)
    hom = homography_correctness(points1, desc, noisy, desc, H_TRUE, SHAPE)
    assert hom["correctness_5"] == 1.0 and 0.0 < hom["mean_corner_error"] < 5.0
    far = points2 + rng.normal(scale=20.0, size=points2.shape)
    assert homography_correctness(points1, desc, far, desc, H_TRUE, SHAPE)["correctness_5"] == 0.0


def test_hamming_descriptors():
    points1, points2, _, rng = _scene(seed=5)
    bits = rng.integers(0, 256, size=(len(points1), 32), dtype=np.uint8)
    assert matching_score(points1, bits, points2, bits, H_TRUE, SHAPE, norm="hamming")["matching_score"] == 1.0
    hom = homography_correctness(points1, bits, points2, bits, H_TRUE, SHAPE, norm="hamming")
    assert hom["correctness_1"] == 1.0
    with pytest.raises(ValueError, match="uint8"):
        matching_score(points1, bits.astype(np.float32), points2, bits, H_TRUE, SHAPE, norm="hamming")


def test_empty_and_bad_inputs():
    empty = np.zeros((0, 2))
    assert repeatability(empty, empty, H_TRUE, SHAPE)["repeatability"] == -1.0
    hom = homography_correctness(empty, np.zeros((0, 8)), empty, np.zeros((0, 8)), H_TRUE, SHAPE)
    assert hom["correctness_5"] == 0.0 and hom["num_matches"] == 0
    with pytest.raises(ValueError, match="keypoints1"):
        repeatability(np.zeros((3, 3)), empty, H_TRUE, SHAPE)
    with pytest.raises(ValueError, match="descriptors2"):
        matching_score(np.zeros((2, 2)), np.zeros((2, 4)), np.zeros((2, 2)), np.zeros((3, 4)), H_TRUE, SHAPE)
