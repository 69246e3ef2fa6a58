"""The light descriptor head: the KP2D head's output contract at a fraction of its cost, and the shared weights."""

from __future__ import annotations

import pytest
import torch

from priordepth_core.models import KeypointNet
from priordepth_core.models.keypoint_net import DESCRIPTOR_HEADS


def _conv_macs(net: torch.nn.Module, height: int, width: int, prefix: str = "") -> int:
    """Multiply-accumulates of the convolutions whose name starts with ``prefix`` for one image."""
    total = []

    def hook(module, _, output):
        total.append(output.numel() * module.kernel_size[0] * module.kernel_size[1] * module.in_channels
                     // module.groups)

    handles = [m.register_forward_hook(hook) for n, m in net.named_modules()
               if isinstance(m, torch.nn.Conv2d) and n.startswith(prefix)]
    with torch.no_grad():
        net(torch.rand(1, 3, height, width))
    for handle in handles:
        handle.remove()
    return sum(total)


@pytest.mark.parametrize(("lite", "upsample"), [(True, True), (True, False), (False, True)])
def test_light_head_keeps_the_kp2d_output_contract(lite, upsample):
    torch.manual_seed(0)
    image = torch.rand(2, 3, 64, 96)
    outputs = {}
    for head in DESCRIPTOR_HEADS:
        net = KeypointNet(descriptor_dim=32, lite=lite, upsample_descriptors=upsample, descriptor_head=head).eval()
        with torch.no_grad():
            outputs[head] = net(image)
        assert net.descriptor_stride == (4 if upsample else 8)
    kp2d, light = outputs["kp2d"], outputs["light"]
    for key in ("score", "coord", "desc"):
        assert light[key].shape == kp2d[key].shape and light[key].dtype == torch.float32, key
    norms = light["desc"].norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert float(light["score"][..., 0, :].abs().max()) == 0.0  # border cells stay at zero
    assert torch.isfinite(light["desc"]).all()


def test_unknown_descriptor_head_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="kp2d, light"):
        KeypointNet(descriptor_dim=16, lite=True, descriptor_head="tiny")


def test_light_head_is_far_cheaper_and_shares_everything_else():
    kp2d = KeypointNet(descriptor_dim=128, lite=True)
    light = KeypointNet(descriptor_dim=128, lite=True, descriptor_head="light")
    # The shipped configuration at 640x192: the head is the bulk of the KP2D network's cost.
    head_kp2d = _conv_macs(kp2d, 192, 640, "descriptor_")
    head_light = _conv_macs(light, 192, 640, "light_descriptor")
    assert head_light * 8 < head_kp2d
    assert _conv_macs(light, 192, 640) * 2 < _conv_macs(kp2d, 192, 640) + 1
    # Every tensor outside the descriptor head has the same name and shape, so a KP2D net can initialise it.
    shared = {k: v.shape for k, v in kp2d.state_dict().items() if not k.startswith("descriptor_")}
    light_state = light.state_dict()
    assert all(k in light_state and light_state[k].shape == s for k, s in shared.items())
    assert all(k in shared or k.startswith("light_descriptor.") for k in light_state)
