"""PoseNet: output shapes, MonoDepth2's decoder scaling, its frame-order/inversion convention, pretrained loading."""

from __future__ import annotations

import math

import pytest
import torch

from priordepth_core.models import PoseNet, ResnetEncoder
from priordepth_core.models.pose_net import PoseDecoder


@pytest.mark.parametrize(("height", "width"), [(64, 96), (96, 320)])
def test_shapes_and_rigid_transform(height, width):
    net = PoseNet()
    with torch.no_grad():
        axis_angle, translation = net(torch.rand(2, 3, height, width), torch.rand(2, 3, height, width))
        T = net.T_context_target(torch.rand(2, 3, height, width), torch.rand(2, 3, height, width), -1)
    assert axis_angle.shape == translation.shape == (2, 3)
    assert T.shape == (2, 4, 4) and T.dtype == torch.float32
    assert torch.equal(T[:, 3], torch.tensor([[0.0, 0.0, 0.0, 1.0]] * 2))
    R = T[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-5)


def test_decoder_mean_pools_and_scales_by_one_hundredth():
    decoder = PoseDecoder(8)
    with torch.no_grad():
        decoder.pose2.weight.zero_()
        decoder.pose2.bias.copy_(torch.tensor([1.0, -2.0, 3.0, 4.0, 5.0, -6.0]))
        axis_angle, translation = decoder(torch.randn(2, 8, 3, 5))
    assert torch.allclose(axis_angle, torch.tensor([[0.01, -0.02, 0.03]] * 2))
    assert torch.allclose(translation, torch.tensor([[0.04, 0.05, -0.06]] * 2))


class _FixedForward:
    """Stands in for PoseNet.forward: records the input order, returns a known 90 degree yaw and a translation."""

    def __init__(self):
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, image_a, image_b):
        self.calls.append((image_a, image_b))
        B = image_a.shape[0]
        return (torch.tensor([[0.0, 0.0, math.pi / 2]]).expand(B, 3),
                torch.tensor([[1.0, 2.0, 3.0]]).expand(B, 3))


def test_T_context_target_follows_monodepth2_convention(monkeypatch):
    net = PoseNet()
    fixed = _FixedForward()
    monkeypatch.setattr(net, "forward", fixed)
    target, context = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    # [R | t] for a +90 degree rotation about z, written out by hand.
    M = torch.tensor([[0.0, -1.0, 0.0, 1.0],
                      [1.0, 0.0, 0.0, 2.0],
                      [0.0, 0.0, 1.0, 3.0],
                      [0.0, 0.0, 0.0, 1.0]])
    # [R^T | -R^T t]: the inverse.
    M_inv = torch.tensor([[0.0, 1.0, 0.0, -2.0],
                          [-1.0, 0.0, 0.0, 1.0],
                          [0.0, 0.0, 1.0, -3.0],
                          [0.0, 0.0, 0.0, 1.0]])

    after = net.T_context_target(target, context, context_offset=1)
    assert fixed.calls[-1][0] is target and fixed.calls[-1][1] is context
    assert torch.allclose(after[0], M, atol=1e-6)

    before = net.T_context_target(target, context, context_offset=-1)
    assert fixed.calls[-1][0] is context and fixed.calls[-1][1] is target
    assert torch.allclose(before[0], M_inv, atol=1e-6)

    net.T_context_target(target, context, context_offset=-3)
    assert fixed.calls[-1][0] is context
    with pytest.raises(ValueError, match="context_offset"):
        net.T_context_target(target, context, context_offset=0)


def test_gradients_and_bad_inputs():
    net = PoseNet()
    T = net.T_context_target(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), 1)
    T[:, :3].sum().backward()
    assert float(net.encoder.conv1.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="image_b"):
        net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 96))


def test_pretrained_conv1_is_split_over_both_frames(tmp_path):
    source = ResnetEncoder(18)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.zeros(10, 512), torch.zeros(10)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    net = PoseNet(pretrained_path=path)
    w = source.conv1.weight
    assert torch.allclose(net.encoder.conv1.weight, torch.cat([w, w], dim=1) / 2)
    assert torch.equal(net.encoder.layer2[0].downsample[0].weight, source.layer2[0].downsample[0].weight)
