"""KeypointNet outputs (shapes, ranges, coordinate convention) and select_keypoints (padding, NMS, sampling, grads)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from priordepth_core.models import KeypointNet, sample_descriptors, select_keypoints


@pytest.mark.parametrize(("height", "width", "lite", "upsample", "dim"), [
    (64, 96, False, True, 256),
    (96, 320, True, True, 64),
    (64, 96, True, False, 32),
])
def test_output_shapes_and_ranges(height, width, lite, upsample, dim):
    net = KeypointNet(descriptor_dim=dim, lite=lite, upsample_descriptors=upsample)
    with torch.no_grad():
        out = net(torch.rand(2, 3, height, width))
    Hc, Wc = height // 8, width // 8
    stride = 4 if upsample else 8
    assert out["score"].shape == (2, 1, Hc, Wc)
    assert out["coord"].shape == (2, 2, Hc, Wc)
    assert out["desc"].shape == (2, dim, height // stride, width // stride)
    assert all(v.dtype == torch.float32 for v in out.values())
    score = out["score"]
    assert 0.0 <= float(score.min()) and float(score.max()) <= 1.0
    border = torch.ones(Hc, Wc, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    assert float(score[..., border].abs().max()) == 0.0
    assert float(score[..., ~border].min()) > 0.0
    x, y = out["coord"][:, 0], out["coord"][:, 1]
    assert float(x.min()) >= 0 and float(x.max()) <= width - 1
    assert float(y.min()) >= 0 and float(y.max()) <= height - 1
    norms = out["desc"].norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_coordinates_are_cell_centres_plus_bounded_offsets():
    net = KeypointNet(descriptor_dim=16, lite=True).eval()
    last = net.location_head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        coord = net(torch.rand(1, 3, 64, 96))["coord"]
    # Cell (i, j) covers pixels 8j..8j+7, whose centre is 8j + 3.5 with pixel centres at integers.
    assert torch.equal(coord[0, 0, 0], torch.arange(12) * 8 + 3.5)
    assert torch.equal(coord[0, 1, :, 0], torch.arange(8) * 8 + 3.5)
    with torch.no_grad():
        last.bias.copy_(torch.tensor([100.0, -100.0]))  # tanh saturates: +1 in x, -1 in y
        coord = net(torch.rand(1, 3, 64, 96))["coord"]
    # cross_ratio 2 moves a keypoint up to 2 * 3.5 = 7 px from its centre, clamped to the image.
    assert torch.allclose(coord[0, 0, 0, :11], torch.arange(11) * 8 + 10.5)
    assert float(coord[0, 0, 0, 11]) == 95.0
    assert float(coord[0, 1, 0, 0]) == 0.0
    assert torch.allclose(coord[0, 1, 1:, 0], torch.arange(1, 8) * 8 - 3.5)


def test_bad_inputs_raise_value_error():
    net = KeypointNet(descriptor_dim=16, lite=True)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 3, 60, 96))
    with pytest.raises(ValueError, match="image"):
        net(torch.rand(3, 64, 96))
    with pytest.raises(ValueError, match="descriptor_dim"):
        KeypointNet(descriptor_dim=0)


def _hand_built_outputs(requires_grad: bool = False) -> dict[str, torch.Tensor]:
    score = torch.tensor([[0.0, 0.1, 0.2, 0.0, 0.0],
                          [0.3, 0.9, 0.8, 0.0, 0.5],
                          [0.0, 0.0, 0.0, 0.0, 0.0],
                          [0.0, 0.0, 0.4, 0.0, 0.7]]).view(1, 1, 4, 5)
    centres = torch.stack(torch.meshgrid(torch.arange(5) * 8 + 3.5, torch.arange(4) * 8 + 3.5, indexing="xy"))
    coord = centres.unsqueeze(0).clone()  # (1, 2, 4, 5)
    desc = torch.eye(20).view(20, 4, 5).unsqueeze(0).clone()  # one-hot descriptor per cell, stride 8
    outputs = {"score": score, "coord": coord, "desc": desc}
    return {k: v.requires_grad_(requires_grad) for k, v in outputs.items()}


def test_select_keypoints_sorts_and_pads_to_fixed_k():
    out = select_keypoints(_hand_built_outputs(), top_k=10)
    assert out["keypoints"].shape == (1, 10, 2) and out["descriptors"].shape == (1, 10, 20)
    assert out["valid"].dtype == torch.bool
    expected = torch.tensor([0.9, 0.8, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0])
    assert torch.allclose(out["scores"][0], expected)
    assert out["valid"][0].tolist() == [True] * 8 + [False] * 2
    assert torch.equal(out["keypoints"][0, 0], torch.tensor([11.5, 11.5]))  # score 0.9 at row 1, column 1
    assert torch.equal(out["keypoints"][0, 2], torch.tensor([35.5, 27.5]))  # score 0.7 at row 3, column 4
    assert torch.equal(out["keypoints"][0, 8:], torch.zeros(2, 2))
    assert torch.equal(out["descriptors"][0, 8:], torch.zeros(2, 20))
    # Descriptor sampled at a cell centre is that cell's one-hot vector.
    assert int(out["descriptors"][0, 0].argmax()) == 1 * 5 + 1
    assert torch.allclose(out["descriptors"][0, :8].norm(dim=-1), torch.ones(8))
    # More slots than cells: still exactly top_k.
    many = select_keypoints(_hand_built_outputs(), top_k=25)
    assert many["valid"].shape == (1, 25) and int(many["valid"].sum()) == 8


def test_select_keypoints_nms_and_threshold():
    nms = select_keypoints(_hand_built_outputs(), top_k=6, nms_radius=1)
    # 0.8, 0.3, 0.2 and 0.1 have the 0.9 cell in their 3x3 neighbourhood.
    assert torch.allclose(nms["scores"][0], torch.tensor([0.9, 0.7, 0.5, 0.4, 0.0, 0.0]))
    assert nms["valid"][0].tolist() == [True] * 4 + [False] * 2
    truncated = select_keypoints(_hand_built_outputs(), top_k=3, nms_radius=1)
    assert torch.allclose(truncated["scores"][0], torch.tensor([0.9, 0.7, 0.5]))
    assert bool(truncated["valid"].all())
    thresholded = select_keypoints(_hand_built_outputs(), top_k=6, score_threshold=0.45)
    assert thresholded["valid"][0].tolist() == [True] * 4 + [False] * 2
    assert torch.allclose(thresholded["scores"][0, :4], torch.tensor([0.9, 0.8, 0.7, 0.5]))


def test_sample_descriptors_is_bilinear_at_pixel_centres():
    desc = _hand_built_outputs()["desc"]
    midway = torch.tensor([[[15.5, 11.5]]])  # halfway between the centres of cells (1, 1) and (1, 2)
    sampled = sample_descriptors(desc, midway, (32, 40))
    expected = torch.zeros(20)
    expected[[6, 7]] = 2 ** -0.5
    assert torch.allclose(sampled[0, 0], expected, atol=1e-6)
    fine = F.normalize(torch.randn(1, 8, 8, 10), dim=1)  # stride-4 map of a 32x40 image
    at_centre = sample_descriptors(fine, torch.tensor([[[4 * 3 + 1.5, 4 * 5 + 1.5]]]), (32, 40))
    assert torch.allclose(at_centre[0, 0], fine[0, :, 5, 3], atol=1e-6)


def test_select_keypoints_gradients_reach_scores_coords_descriptors():
    outputs = _hand_built_outputs(requires_grad=True)
    out = select_keypoints(outputs, top_k=10)
    weights = torch.randn(10, 20)
    (out["scores"].sum() + out["keypoints"].sum() + (out["descriptors"] * weights).sum()).backward()
    selected = outputs["score"].detach() > 0
    assert torch.equal(outputs["score"].grad, selected.float())
    assert bool((outputs["coord"].grad.abs().sum(dim=1, keepdim=True) > 0)[selected].all())
    assert float(outputs["coord"].grad[:, :, ~selected[0, 0]].abs().max()) == 0.0
    assert float(outputs["desc"].grad.abs().sum()) > 0


def test_network_to_selection_is_differentiable():
    net = KeypointNet(descriptor_dim=16, lite=True)
    out = select_keypoints(net(torch.rand(1, 3, 64, 64)), top_k=20)
    (out["scores"].sum() + out["keypoints"].sum() + out["descriptors"][..., 0].sum()).backward()
    for module in (net.score_head[-1], net.location_head[-1], net.descriptor_out, net.conv1a[0]):
        assert float(module.weight.grad.abs().sum()) > 0


def test_select_keypoints_rejects_bad_outputs():
    outputs = _hand_built_outputs()
    with pytest.raises(ValueError, match="dict"):
        select_keypoints({"score": outputs["score"]})
    with pytest.raises(ValueError, match="coord"):
        select_keypoints(dict(outputs, coord=outputs["coord"][:, :, :3]))
    with pytest.raises(ValueError, match="top_k"):
        select_keypoints(outputs, top_k=0)
