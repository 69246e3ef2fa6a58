"""match_descriptors (mutual NN, ratio test, distance cut, validity, confidence) and gather_matches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from priordepth_core.models import gather_matches, match_descriptors


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def test_mutual_nearest_neighbours_recover_a_permutation():
    generator = torch.Generator().manual_seed(0)
    desc1 = _unit(torch.randn(2, 50, 32, generator=generator))
    perm = torch.stack([torch.randperm(50, generator=generator) for _ in range(2)])  # desc2[b, j] = desc1[b, perm[j]]
    desc2 = _unit(torch.gather(desc1, 1, perm.unsqueeze(-1).expand(-1, -1, 32))
                  + 0.02 * torch.randn(2, 50, 32, generator=generator))
    match = match_descriptors(desc1, desc2, ratio=None)
    expected = torch.argsort(perm, dim=1)  # where each keypoint of image 1 went
    assert bool(match["valid"].all())
    assert torch.equal(match["index"], expected)
    assert match["index"].dtype == torch.int64
    matched2 = torch.gather(desc2, 1, match["index"].unsqueeze(-1).expand(-1, -1, 32))
    assert torch.allclose(match["distance"], (desc1 - matched2).norm(dim=-1), atol=1e-5)
    assert 0.0 <= float(match["confidence"].min()) and float(match["confidence"].max()) <= 1.0
    assert float(match["confidence"].min()) > 0.5  # well-separated random descriptors are confident


def _axes(*rows: list[float]) -> torch.Tensor:
    return _unit(torch.tensor([rows], dtype=torch.float64))


def test_mutual_check_keeps_only_the_closer_claimant():
    desc1 = _axes([1.0, 0.0, 0.0], [1.0, 0.2, 0.0])  # both nearest to image 2's first keypoint
    desc2 = _axes([1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    mutual = match_descriptors(desc1, desc2, ratio=None)
    assert mutual["index"][0].tolist() == [0, -1]
    assert mutual["valid"][0].tolist() == [True, False]
    assert float(mutual["confidence"][0, 1]) == 0.0
    one_way = match_descriptors(desc1, desc2, mutual=False, ratio=None)
    assert one_way["index"][0].tolist() == [0, 0]


def test_ratio_test_rejects_ambiguous_matches():
    desc1 = _axes([1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    # Keypoint 0's best (distance ~0.10) and second best (~0.12) are close; keypoint 1's only close match is unique.
    desc2 = _axes([1.0, 0.1, 0.0], [1.0, 0.0, 0.12], [0.0, 1.0, 0.05])
    strict = match_descriptors(desc1, desc2, ratio=0.8)
    assert strict["valid"][0].tolist() == [False, True]
    assert strict["index"][0].tolist() == [-1, 2]
    loose = match_descriptors(desc1, desc2, ratio=None)
    assert loose["index"][0].tolist() == [0, 2]
    d = loose["distance"][0]
    assert torch.allclose(d[0], (desc1[0, 0] - desc2[0, 0]).norm())


def test_max_distance_and_validity_masks():
    desc1 = _axes([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    desc2 = _axes([1.0, 0.05, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0])
    cut = match_descriptors(desc1, desc2, ratio=None, max_distance=0.2)
    assert cut["valid"][0].tolist() == [True, False, True]  # keypoint 1 is ~0.46 away
    valid2 = torch.tensor([[False, True, True]])
    masked = match_descriptors(desc1, desc2, torch.tensor([[True, True, False]]), valid2, mutual=False, ratio=None)
    assert masked["index"][0, 0] != 0  # never matched to an invalid keypoint
    assert masked["index"][0, 2] == -1 and not bool(masked["valid"][0, 2])
    none = match_descriptors(desc1, desc2, valid2=torch.zeros(1, 3, dtype=torch.bool))
    assert not bool(none["valid"].any())
    assert torch.equal(none["distance"], torch.full((1, 3), 2.0, dtype=torch.float64))
    assert bool(torch.isfinite(none["confidence"]).all())


def test_confidence_is_differentiable():
    generator = torch.Generator().manual_seed(1)
    desc1 = _unit(torch.randn(1, 5, 6, generator=generator, dtype=torch.float64)).requires_grad_(True)
    desc2 = _unit(desc1.detach() + 0.1 * torch.randn(1, 5, 6, generator=generator, dtype=torch.float64))
    desc2.requires_grad_(True)
    match = match_descriptors(desc1, desc2, ratio=None)
    assert bool(match["valid"].all())
    match["confidence"].sum().backward()
    assert float(desc1.grad.abs().sum()) > 0 and float(desc2.grad.abs().sum()) > 0
    assert torch.autograd.gradcheck(
        lambda a, b: match_descriptors(a, b, ratio=None)["confidence"], (desc1.detach().requires_grad_(),
                                                                          desc2.detach().requires_grad_()))


def test_gather_matches_weights():
    desc1 = _axes([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.1, 0.0])
    desc2 = _axes([0.0, 1.0, 0.0], [1.0, 0.0, 0.0])
    match = match_descriptors(desc1, desc2, ratio=None)
    assert match["index"][0].tolist() == [1, 0, -1]
    kp1 = {"keypoints": torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], dtype=torch.float64),
           "scores": torch.tensor([[0.5, 0.8, 0.9]], dtype=torch.float64)}
    kp2 = {"keypoints": torch.tensor([[[10.0, 20.0], [30.0, 40.0]]], dtype=torch.float64),
           "scores": torch.tensor([[0.25, 0.6]], dtype=torch.float64)}
    x1, x2, weights = gather_matches(kp1, kp2, match)
    assert torch.equal(x1, kp1["keypoints"])
    assert x2[0].tolist() == [[30.0, 40.0], [10.0, 20.0], [5.0, 6.0]]
    conf = match["confidence"][0]
    assert torch.allclose(weights[0], torch.stack([conf[0] * 0.5 * 0.6, conf[1] * 0.8 * 0.25, conf[2] * 0]))
    assert float(weights[0, 2]) == 0.0


def test_bad_arguments_raise_value_error():
    desc = _unit(torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="desc2"):
        match_descriptors(desc, torch.randn(1, 4, 7))
    with pytest.raises(ValueError, match="valid1"):
        match_descriptors(desc, desc, valid1=torch.ones(1, 4))
    with pytest.raises(ValueError, match="ratio"):
        match_descriptors(desc, desc, ratio=1.5)
