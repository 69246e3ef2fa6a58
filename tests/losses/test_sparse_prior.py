import math

import pytest
import torch

from priordepth_core.losses.sparse_prior import SparseDepthPriorLoss, sample_depth_at


def test_sample_depth_at_pixel_centres_and_between():
    depth = torch.arange(12.0, dtype=torch.float64).view(1, 1, 3, 4)  # value = 4 y + x
    pixels = torch.tensor([[[0.0, 0.0], [3.0, 2.0], [1.5, 0.5], [2.25, 1.0]]], dtype=torch.float64)
    expected = torch.tensor([[0.0, 11.0, 3.5, 6.25]], dtype=torch.float64)
    assert torch.allclose(sample_depth_at(depth, pixels), expected, atol=1e-12)


def test_sample_depth_at_gradcheck_and_shape_error():
    depth = torch.rand(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    pixels = torch.tensor([[[1.3, 2.2], [0.4, 0.7]]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sample_depth_at, (depth, pixels))
    with pytest.raises(ValueError, match="pixels"):
        sample_depth_at(depth, pixels[..., :1])


def test_exact_depths_give_zero_and_scaled_depths_log_two():
    tri = torch.tensor([[2.0, 5.0, 10.0]])
    parallax = torch.full((1, 3), 3.0)
    loss_fn = SparseDepthPriorLoss()
    loss, metrics = loss_fn(tri.clone(), tri, parallax)
    assert loss.item() == 0.0 and metrics["sparse_prior/used_points"].item() == 3
    loss, metrics = loss_fn(2 * tri, tri, parallax)
    assert loss.item() == pytest.approx(math.log(2.0), rel=1e-6)
    assert metrics["sparse_prior/median_abs_log_error"].item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_only_well_conditioned_points_count_and_weights_apply():
    tri = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0]])
    pred = torch.tensor([[math.e, math.e**2, 1.0, 1.0, 1.0]])
    parallax = torch.tensor([[2.0, 2.0, 0.5, 2.0, 2.0]])  # the third is below 1 degree
    valid = torch.tensor([[True, True, True, False, True]])  # the fourth failed cheirality
    weights = torch.tensor([[1.0, 3.0, 1.0, 1.0, 0.0]])  # the fifth carries no weight
    loss, metrics = SparseDepthPriorLoss(min_parallax_deg=1.0)(pred, tri, parallax, weights, valid)
    assert loss.item() == pytest.approx((1 * 1 + 3 * 2) / 4, rel=1e-6)
    assert metrics["sparse_prior/used_points"].item() == 2
    loss, _ = SparseDepthPriorLoss(max_depth=0.5)(pred, tri, parallax)
    assert loss.item() == 0.0


def test_nothing_qualifies_gives_zero_not_nan():
    pred = torch.tensor([[1.0, -2.0, 3.0, 0.0]], requires_grad=True)
    tri = torch.tensor([[float("nan"), 2.0, -1.0, float("inf")]])
    parallax = torch.tensor([[5.0, 5.0, 5.0, 5.0]])
    loss, metrics = SparseDepthPriorLoss()(pred, tri, parallax)
    loss.backward()
    assert loss.item() == 0.0
    assert metrics["sparse_prior/used_points"].item() == 0
    assert metrics["sparse_prior/median_abs_log_error"].item() == 0.0
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() == 0


def test_gradient_pulls_prediction_towards_triangulation_only():
    tri = torch.tensor([[4.0, 4.0]], requires_grad=True)
    pred = torch.tensor([[2.0, 8.0]], requires_grad=True)
    loss, _ = SparseDepthPriorLoss()(pred, tri, torch.full((1, 2), 2.0))
    loss.backward()
    assert pred.grad[0, 0] < 0 < pred.grad[0, 1]  # descent raises the low one, lowers the high one
    assert tri.grad is None  # target detached by default


def test_gradcheck():
    pred = (torch.rand(2, 5, dtype=torch.float64) + 0.5).requires_grad_(True)
    tri = torch.rand(2, 5, dtype=torch.float64) + 0.5
    parallax = torch.rand(2, 5, dtype=torch.float64) * 4
    assert torch.autograd.gradcheck(lambda p: SparseDepthPriorLoss()(p, tri, parallax)[0], (pred,))
