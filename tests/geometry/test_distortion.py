"""Lens distortion (priordepth_core.geometry.distortion) against the lens models written out by hand here."""

from __future__ import annotations

import numpy as np
import pytest

from priordepth_core.geometry.distortion import LensDistortion, Undistorter, UndistorterCache

K = np.array([[300.0, 0.0, 158.0], [0.0, 310.0, 121.0], [0.0, 0.0, 1.0]])
SIZE_HW = (240, 320)
PLUMB_BOB = LensDistortion("plumb_bob", (-0.28, 0.09, 0.0012, -0.0008, -0.012))
EQUIDISTANT = LensDistortion("equidistant", (0.05, -0.01, 0.004, -0.001))


def plumb_bob_by_hand(points: np.ndarray, K: np.ndarray, d: tuple[float, ...]) -> np.ndarray:
    """Brown-Conrady: pinhole pixels -> distorted pixels (Bouguet's / OpenCV's equations, written out)."""
    k1, k2, p1, p2, k3 = d
    x = (points[:, 0] - K[0, 2]) / K[0, 0]
    y = (points[:, 1] - K[1, 2]) / K[1, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([K[0, 0] * xd + K[0, 2], K[1, 1] * yd + K[1, 2]], axis=1)


def equidistant_by_hand(points: np.ndarray, K: np.ndarray, d: tuple[float, ...]) -> np.ndarray:
    """Kannala-Brandt equidistant: theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)."""
    x = (points[:, 0] - K[0, 2]) / K[0, 0]
    y = (points[:, 1] - K[1, 2]) / K[1, 1]
    r = np.hypot(x, y)
    theta = np.arctan(r)
    theta_d = theta * (1 + d[0] * theta**2 + d[1] * theta**4 + d[2] * theta**6 + d[3] * theta**8)
    scale = np.where(r > 0, theta_d / np.maximum(r, 1e-12), 1.0)
    return np.stack([K[0, 0] * x * scale + K[0, 2], K[1, 1] * y * scale + K[1, 2]], axis=1)


def pixel_grid(step: int = 7) -> np.ndarray:
    v, u = np.mgrid[0 : SIZE_HW[0] : step, 0 : SIZE_HW[1] : step]
    return np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float64)


@pytest.mark.parametrize("distortion, by_hand", [(PLUMB_BOB, plumb_bob_by_hand),
                                                 (EQUIDISTANT, equidistant_by_hand)])
def test_points_round_trip_and_agree_with_the_model_written_by_hand(distortion, by_hand):
    undistorter = Undistorter(K, distortion, SIZE_HW)
    pinhole = pixel_grid()
    raw = by_hand(pinhole, K, distortion.coefficients)
    assert np.abs(raw - pinhole).max() > 10  # a lens strong enough for the checks below to mean something
    np.testing.assert_allclose(undistorter.distort_points(pinhole), raw, atol=1e-6)
    np.testing.assert_allclose(undistorter.undistort_points(raw), pinhole, atol=1e-4)


@pytest.mark.parametrize("distortion, by_hand", [(PLUMB_BOB, plumb_bob_by_hand),
                                                 (EQUIDISTANT, equidistant_by_hand)])
def test_rectification_maps_sample_the_raw_pixel_of_every_rectified_pixel(distortion, by_hand):
    undistorter = Undistorter(K, distortion, SIZE_HW)
    # A raw image whose two channels hold their own pixel coordinates: rectifying it reads the maps back.
    v, u = np.mgrid[0 : SIZE_HW[0], 0 : SIZE_HW[1]].astype(np.float32)
    coordinates = undistorter.rectify_image(np.stack([u, v], axis=2))
    grid = pixel_grid()
    expected = by_hand(grid, K, distortion.coefficients)
    inside = (expected[:, 0] >= 0) & (expected[:, 0] <= SIZE_HW[1] - 1) & (expected[:, 1] >= 0) & (
        expected[:, 1] <= SIZE_HW[0] - 1)
    sampled = coordinates[grid[:, 1].astype(int), grid[:, 0].astype(int)]
    assert inside.mean() > 0.9
    # cv2.remap interpolates with 1/32-pixel fixed-point weights.
    assert np.abs(sampled[inside] - expected[inside]).max() < 1 / 32 + 1e-3  # pixels


def test_distorted_image_rectifies_back_to_the_pinhole_image():
    rng = np.random.default_rng(0)
    pinhole = (rng.random((SIZE_HW[0] // 8, SIZE_HW[1] // 8, 3)) * 255).astype(np.uint8)
    pinhole = np.kron(pinhole, np.ones((8, 8, 1), dtype=np.uint8))  # blocks: bilinear resampling stays exact inside
    undistorter = Undistorter(K, PLUMB_BOB, SIZE_HW)
    raw = undistorter.distort_image(pinhole)
    rectified = undistorter.rectify_image(raw)
    centre = (slice(40, 200), slice(60, 260))
    assert np.mean(raw[centre] != pinhole[centre]) > 0.2  # the lens moved pixels
    assert np.median(np.abs(rectified[centre].astype(int) - pinhole[centre])) == 0
    assert 0.5 < undistorter.valid_fraction <= 1.0


def test_zero_coefficients_are_the_identity_and_keep_the_image_object():
    undistorter = Undistorter(K, LensDistortion("plumb_bob", (0, 0, 0, 0, 0)), SIZE_HW)
    image = np.zeros((*SIZE_HW, 3), dtype=np.uint8)
    assert undistorter.is_identity and undistorter.rectify_image(image) is image
    np.testing.assert_array_equal(undistorter.rectified_K, K)
    assert Undistorter(K, None, SIZE_HW).is_identity


def test_rectified_K_other_than_K_is_honoured():
    rectified_K = K.copy()
    rectified_K[0, 0] = rectified_K[1, 1] = 250.0
    undistorter = Undistorter(K, None, SIZE_HW, rectified_K)
    assert not undistorter.is_identity
    np.testing.assert_allclose(undistorter.undistort_points([[158.0 + 30.0, 121.0]]), [[158.0 + 25.0, 121.0]])


def test_unsupported_model_and_bad_coefficients_are_named():
    with pytest.raises(ValueError, match=r"unsupported lens distortion model 'kannala'.*plumb_bob.*equidistant"):
        LensDistortion("kannala", (0.1, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="equidistant takes 4 coefficients, got 5"):
        LensDistortion("equidistant", (0.1, 0.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="finite"):
        LensDistortion("plumb_bob", (np.nan, 0.0, 0.0, 0.0, 0.0))
    assert LensDistortion.from_camera_info("plumb_bob", []) is None
    with pytest.raises(ValueError, match="image is 10x10"):
        Undistorter(K, PLUMB_BOB, SIZE_HW).rectify_image(np.zeros((10, 10, 3), np.uint8))


def test_cache_builds_one_undistorter_per_camera():
    cache = UndistorterCache()
    first = cache.get(K, PLUMB_BOB, SIZE_HW)
    assert cache.get(K.copy(), LensDistortion("plumb_bob", PLUMB_BOB.coefficients), SIZE_HW) is first
    assert cache.get(K, EQUIDISTANT, SIZE_HW) is not first
