import math

import numpy as np
import pytest

from priordepth_core.evaluate.depth_metrics import (
    aggregate_depth_metrics,
    compute_depth_errors,
    compute_depth_metrics,
    crop_mask,
    resize_prediction,
)


def test_errors_by_hand():
    gt = np.array([[1.0, 2.0], [4.0, 8.0]])
    pred = np.array([[1.0, 2.0], [2.0, 16.0]])
    m = compute_depth_metrics(gt, pred, crop=None, median_scaling=False)
    assert m["abs_rel"] == pytest.approx(0.375)
    assert m["sq_rel"] == pytest.approx(2.25)
    assert m["rmse"] == pytest.approx(math.sqrt(17))
    assert m["rmse_log"] == pytest.approx(math.log(2) * math.sqrt(0.5))
    assert (m["a1"], m["a2"], m["a3"]) == (0.5, 0.5, 0.5)  # ratio 2 fails even 1.25**3 = 1.953
    assert m["ratio"] == 1.0 and m["num_pixels"] == 4


def test_median_scaling_then_clamp():
    gt = np.array([[10.0, 20.0, 30.0, 40.0]])
    pred = np.array([[5.0, 10.0, 20.0, 50.0]])  # ratio 25 / 15; the last becomes 83.3 and is clamped to 80
    m = compute_depth_metrics(gt, pred, crop=None)
    assert m["ratio"] == pytest.approx(5 / 3)
    assert m["abs_rel"] == pytest.approx((1 / 6 + 1 / 6 + 1 / 9 + 1.0) / 4)
    exact = compute_depth_metrics(gt, 3 * gt, crop=None)
    assert exact["abs_rel"] == pytest.approx(0.0, abs=1e-15) and exact["ratio"] == pytest.approx(1 / 3)


def test_range_mask_excludes_gt_outside_the_interval():
    gt = np.array([[0.0, 5.0, 90.0, 10.0]])
    pred = np.array([[1.0, 5.0, 1.0, 10.0]])
    m = compute_depth_metrics(gt, pred, crop=None, median_scaling=False)
    assert m["num_pixels"] == 2 and m["abs_rel"] == 0.0
    with pytest.raises(ValueError, match="no ground-truth"):
        compute_depth_metrics(np.zeros((2, 2)), np.ones((2, 2)), crop=None)


def test_garg_and_eigen_crops_on_kitti_size():
    garg = crop_mask(375, 1242, "garg")  # rows 153:371, cols 44:1197 (int32 truncation, as MonoDepth2)
    rows, cols = np.flatnonzero(garg.any(1)), np.flatnonzero(garg.any(0))
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (153, 371, 44, 1197)
    assert garg.sum() == (371 - 153) * (1197 - 44)
    eigen = crop_mask(375, 1242, "eigen")  # 0.3324324*375 = 124.66, 0.91351351*375 = 342.57
    rows = np.flatnonzero(eigen.any(1))
    assert (rows[0], rows[-1] + 1) == (124, 342)
    with pytest.raises(ValueError, match="crop"):
        crop_mask(10, 10, "zhou")


def test_only_the_crop_is_evaluated():
    gt = np.full((375, 1242), 10.0)
    pred = gt.copy()
    pred[:100] = 50.0  # wrong, but above the Garg crop
    m = compute_depth_metrics(gt, pred, median_scaling=False)
    assert m["abs_rel"] == 0.0
    assert compute_depth_metrics(gt, pred, crop=None, median_scaling=False)["abs_rel"] > 0.5


def test_resize_interpolates_disparity_like_monodepth2():
    # Disparity [1, 0.25] resized 2 -> 4 columns with half-pixel centres: [1, 0.8125, 0.4375, 0.25].
    depth = resize_prediction(np.array([[1.0, 4.0]]), 1, 4, kind="depth")
    np.testing.assert_allclose(depth, 1 / np.array([[1.0, 0.8125, 0.4375, 0.25]]), rtol=1e-6)
    disparity_input = resize_prediction(np.array([[1.0, 0.25]]), 1, 4, kind="disparity")
    np.testing.assert_allclose(disparity_input, depth, rtol=1e-12)
    with pytest.raises(ValueError, match="positive"):
        resize_prediction(np.array([[0.0, 1.0]]), 1, 4)


def test_aggregate_means_and_ratio_summary():
    a = compute_depth_errors(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    b = compute_depth_errors(np.array([1.0, 2.0]), np.array([2.0, 4.0]))
    summary = aggregate_depth_metrics([{**a, "ratio": 2.0}, {**b, "ratio": 4.0}])
    assert summary["abs_rel"] == pytest.approx(0.5)  # (0 + 1) / 2
    assert summary["a1"] == pytest.approx(0.5)
    assert summary["ratio_median"] == pytest.approx(3.0)
    assert summary["ratio_std"] == pytest.approx(np.std([2 / 3, 4 / 3]))
    assert summary["num_images"] == 2
