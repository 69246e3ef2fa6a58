import math

import pytest
import torch

from priordepth_core.losses.smoothness import SmoothnessLoss, edge_aware_smoothness


def test_constant_disparity_is_smooth():
    loss, metrics = SmoothnessLoss()(torch.full((2, 1, 6, 8), 0.3), torch.rand(2, 3, 6, 8))
    assert loss.item() == 0.0 and metrics["smoothness/raw_scale0"].item() == 0.0


def test_ramp_on_flat_image_by_hand():
    # disp = 1 + 0.5 x over 5 columns: mean 2, normalised x-gradient 0.25 everywhere, no y-gradient, flat image.
    disp = (1 + 0.5 * torch.arange(5, dtype=torch.float64)).expand(1, 1, 4, 5)
    image = torch.full((1, 3, 4, 5), 0.5, dtype=torch.float64)
    loss, metrics = SmoothnessLoss(weight=1e-3)(disp, image, scale=2)
    assert metrics["smoothness/raw_scale2"].item() == pytest.approx(0.25, rel=1e-6)
    assert loss.item() == pytest.approx(1e-3 / 4 * 0.25, rel=1e-6)


def test_image_edges_discount_disparity_edges():
    disp = torch.zeros(1, 1, 3, 4, dtype=torch.float64)
    disp[..., 2:] = 1.0  # one disparity step between columns 1 and 2
    flat = torch.zeros(1, 3, 3, 4, dtype=torch.float64)
    edge = flat.clone()
    edge[..., 2:] = 0.8  # an image edge at the same place
    # mean over 3 x 3 x-gradients, one column of them 1: 1/3; under the edge multiplied by exp(-0.8).
    assert edge_aware_smoothness(disp, flat).item() == pytest.approx(1 / 3)
    assert edge_aware_smoothness(disp, edge).item() == pytest.approx(math.exp(-0.8) / 3)


def test_size_mismatch_and_finite_gradient():
    with pytest.raises(ValueError, match="image"):
        SmoothnessLoss()(torch.rand(1, 1, 4, 4), torch.rand(1, 3, 8, 8))
    disp = torch.zeros(1, 1, 4, 5, requires_grad=True)  # all-zero disparity: mean-normalisation divides by 1e-7
    loss, _ = SmoothnessLoss()(disp, torch.rand(1, 3, 4, 5))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(disp.grad).all()


def test_gradcheck():
    disp = (torch.rand(1, 1, 4, 5, dtype=torch.float64) + 0.5).requires_grad_(True)
    image = torch.rand(1, 3, 4, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda d: SmoothnessLoss()(d, image, 1)[0], (disp,))
