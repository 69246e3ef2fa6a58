"""ResnetEncoder: feature pyramid shapes, torchvision parameter names, pretrained loading and its errors."""

from __future__ import annotations

import re

import pytest
import torch

from priordepth_core.models import ResnetEncoder


def _torchvision_format(encoder: ResnetEncoder, num_classes: int = 1000) -> dict[str, torch.Tensor]:
    """A state dict as torchvision's ImageNet files hold it: classifier included, no BatchNorm step counters."""
    state = {k: v.clone() for k, v in encoder.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"] = torch.randn(num_classes, encoder.num_ch_enc[-1])
    state["fc.bias"] = torch.randn(num_classes)
    return state


@pytest.mark.parametrize(("num_layers", "width", "channels"), [
    (18, 1.0, [64, 64, 128, 256, 512]),
    (18, 0.5, [32, 32, 64, 128, 256]),
    (34, 1.0, [64, 64, 128, 256, 512]),
    (50, 1.0, [64, 256, 512, 1024, 2048]),
])
def test_feature_pyramid_shapes(num_layers, width, channels):
    encoder = ResnetEncoder(num_layers, width_multiplier=width)
    assert encoder.num_ch_enc == channels
    features = encoder(torch.rand(2, 3, 64, 96))
    assert len(features) == 5
    for level, (feature, c) in enumerate(zip(features, channels)):
        stride = 2 ** (level + 1)
        assert feature.shape == (2, c, 64 // stride, 96 // stride)
        assert feature.dtype == torch.float32


@pytest.mark.parametrize(("num_layers", "num_entries", "sample_keys"), [
    # torchvision's resnet18 state_dict has 122 entries, resnet50 320; less fc.weight and fc.bias.
    (18, 120, ["conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
               "layer2.0.downsample.1.running_var", "layer4.1.bn2.num_batches_tracked"]),
    (50, 318, ["layer1.0.conv3.weight", "layer1.0.downsample.0.weight", "layer3.5.bn3.bias",
               "layer4.2.conv2.weight"]),
])
def test_parameter_names_match_torchvision(num_layers, num_entries, sample_keys):
    state = ResnetEncoder(num_layers).state_dict()
    assert len(state) == num_entries
    assert set(sample_keys) <= state.keys()
    assert not any(k.startswith("fc.") for k in state)


def test_load_pretrained_from_torchvision_format_file(tmp_path):
    source = ResnetEncoder(18)
    path = tmp_path / "resnet18.pth"
    torch.save(_torchvision_format(source), path)
    target = ResnetEncoder(18, pretrained_path=path)
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(target.state_dict()[key], value), key
    source.eval()
    target.eval()
    image = torch.rand(1, 3, 64, 64)
    assert torch.allclose(source(image)[-1], target(image)[-1])


def test_multi_image_encoder_repeats_and_scales_conv1(tmp_path):
    single = ResnetEncoder(18)
    path = tmp_path / "resnet18.pth"
    torch.save(_torchvision_format(single), path)
    stacked = ResnetEncoder(18, num_input_images=2, pretrained_path=path)
    w = single.conv1.weight
    assert stacked.conv1.weight.shape == (64, 6, 7, 7)
    assert torch.allclose(stacked.conv1.weight, torch.cat([w, w], dim=1) / 2)
    # Two copies of one image through the stacked encoder give the single-image features (MonoDepth2's intent).
    single.eval()
    stacked.eval()
    image = torch.rand(1, 3, 64, 64)
    for a, b in zip(single(image), stacked(torch.cat([image, image], dim=1))):
        assert torch.allclose(a, b, atol=1e-5)


def test_bad_state_dicts_raise_clear_errors(tmp_path):
    encoder = ResnetEncoder(18)
    good = _torchvision_format(encoder)

    missing = dict(good)
    del missing["layer3.1.conv2.weight"]
    with pytest.raises(ValueError, match=re.escape("missing: layer3.1.conv2.weight")):
        encoder.adapt_state_dict(missing)

    unexpected = dict(good, **{"layer5.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=re.escape("unexpected: layer5.0.conv1.weight")):
        encoder.adapt_state_dict(unexpected)

    # A full-width file into the lite encoder.
    with pytest.raises(ValueError, match=re.escape("shape mismatch: bn1.bias")):
        ResnetEncoder(18, width_multiplier=0.5).adapt_state_dict(good)

    path = tmp_path / "resnet50.pth"
    torch.save(_torchvision_format(ResnetEncoder(50)), path)
    with pytest.raises(ValueError, match="ResNet-18"):
        encoder.load_pretrained(path)
    with pytest.raises(FileNotFoundError):
        encoder.load_pretrained(tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="mapping"):
        encoder.adapt_state_dict([1, 2])


def test_constructor_and_input_errors():
    with pytest.raises(ValueError, match="num_layers"):
        ResnetEncoder(101)
    with pytest.raises(ValueError, match="num_input_images"):
        ResnetEncoder(18, num_input_images=0)
    with pytest.raises(ValueError, match="images"):
        ResnetEncoder(18, num_input_images=2)(torch.rand(1, 3, 64, 64))
