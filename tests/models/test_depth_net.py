"""DepthNet: multi-scale shapes, the disparity-to-depth mapping and range, input checks, pretrained encoder."""

from __future__ import annotations

import pytest
import torch

from priordepth_core.models import DepthNet, ResnetEncoder, disp_to_depth


@pytest.mark.parametrize(("height", "width", "lite"), [(64, 96, True), (96, 320, True), (64, 64, False)])
def test_multiscale_shapes_and_depth_range(height, width, lite):
    net = DepthNet(lite=lite, min_depth=0.5, max_depth=40.0)
    with torch.no_grad():
        out = net(torch.rand(2, 3, height, width))
    assert len(out["disp"]) == len(out["depth"]) == 4
    for scale, (disp, depth) in enumerate(zip(out["disp"], out["depth"])):
        assert disp.shape == depth.shape == (2, 1, height // 2 ** scale, width // 2 ** scale)
        assert disp.dtype == depth.dtype == torch.float32
        assert 0.0 <= float(disp.min()) and float(disp.max()) <= 1.0
        assert 0.5 - 1e-5 <= float(depth.min()) and float(depth.max()) <= 40.0 + 1e-3
        assert torch.allclose(depth, disp_to_depth(disp, 0.5, 40.0)[1])


def test_disp_to_depth_golden_values():
    disp = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)
    scaled, depth = disp_to_depth(disp, 0.1, 100.0)
    assert torch.allclose(scaled, torch.tensor([0.01, 10.0, 5.005], dtype=torch.float64))
    assert torch.allclose(depth, torch.tensor([100.0, 0.1, 1.0 / 5.005], dtype=torch.float64))


def test_scale_subset_and_float64():
    net = DepthNet(lite=True, scales=(2, 0)).double()
    out = net(torch.rand(1, 3, 64, 96, dtype=torch.float64))
    assert [d.shape[-2:] for d in out["depth"]] == [(64, 96), (16, 24)]
    assert out["depth"][0].dtype == torch.float64
    # Only the levels down to the finest requested scale are built.
    assert len(DepthNet(lite=True, scales=(2, 3)).decoder.upconv0) == 3


def test_gradients_reach_encoder_and_decoder():
    net = DepthNet(lite=True, scales=(0,))
    net(torch.rand(1, 3, 64, 64))["depth"][0].mean().backward()
    assert float(net.encoder.conv1.weight.grad.abs().sum()) > 0
    assert float(net.decoder.dispconv["0"].conv.weight.grad.abs().sum()) > 0


def test_bad_inputs_raise_value_error():
    net = DepthNet(lite=True)
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, 64, 90))
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, 48, 64))
    with pytest.raises(ValueError, match="image"):
        net(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="floating"):
        net(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="scales"):
        DepthNet(scales=(0, 4))
    with pytest.raises(ValueError, match="min_depth"):
        DepthNet(min_depth=10.0, max_depth=1.0)


def test_pretrained_path_loads_encoder(tmp_path):
    source = ResnetEncoder(18)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    net = DepthNet(pretrained_path=path)
    assert torch.equal(net.encoder.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
