import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from priordepth_core.losses.keypoint import (
    KeypointLoss,
    apply_homography,
    homography_warp_fn,
    sample_random_homography,
    warp_image_homography,
)

Hc, Wc, CELL, D = 6, 8, 8, 16
IMAGE_SIZE = (Hc * CELL, Wc * CELL)


def _outputs(seed=0, B=1, dtype=torch.float64, jitter=0.0):
    """KeypointNet-like outputs: one keypoint per cell near its centre, random scores, random unit descriptors."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(Hc, dtype=dtype), torch.arange(Wc, dtype=dtype), indexing="ij")
    coord = torch.stack([xs, ys]) * CELL + (CELL - 1) / 2  # cell centres, (2, Hc, Wc)
    coord = coord.expand(B, 2, Hc, Wc) + jitter * (torch.rand(B, 2, Hc, Wc, generator=g, dtype=dtype) - 0.5)
    score = torch.rand(B, 1, Hc, Wc, generator=g, dtype=dtype)
    desc = F.normalize(torch.randn(B, D, Hc, Wc, generator=g, dtype=dtype), dim=1)
    return {"score": score, "coord": coord.contiguous(), "desc": desc}


def _shift_outputs(out, cells):
    """Target outputs of an image translated right by ``cells`` cells: content moves right, coords + cells*CELL."""
    shifted = {key: torch.roll(value, cells, dims=3) for key, value in out.items()}
    shifted["coord"] = shifted["coord"].clone()
    shifted["coord"][:, 0] += cells * CELL
    return shifted


def _translation(dx, B=1, dtype=torch.float64):
    H = torch.eye(3, dtype=dtype).repeat(B, 1, 1)
    H[:, 0, 2] = dx
    return H


def test_identity_warp_gives_zero_loss_and_full_matching():
    out = _outputs()
    loss, metrics = KeypointLoss()(out, out, homography_warp_fn(_translation(0.0), IMAGE_SIZE))
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    assert metrics["keypoint/matched_fraction"].item() == 1.0
    assert metrics["keypoint/descriptor_recall"].item() == 1.0
    assert metrics["keypoint/visible_fraction"].item() == pytest.approx((Hc - 2) * (Wc - 2) / (Hc * Wc))


def test_correct_translation_beats_wrong_warps():
    source = _outputs(seed=1)
    target = _shift_outputs(source, 1)
    loss_fn = KeypointLoss()
    right, right_metrics = loss_fn(source, target, homography_warp_fn(_translation(8.0), IMAGE_SIZE))
    assert right.item() == pytest.approx(0.0, abs=1e-5)
    assert right_metrics["keypoint/descriptor_recall"].item() == 1.0
    for dx in (0.0, 3.0, 16.0):
        wrong, metrics = loss_fn(source, target, homography_warp_fn(_translation(dx), IMAGE_SIZE))
        assert wrong.item() > right.item() + 0.1, dx
        assert metrics["keypoint/descriptor_recall"].item() < 0.5
    # A 3 px error still matches (threshold 4 px) with a 3 px mean location error.
    _, metrics = loss_fn(source, target, homography_warp_fn(_translation(11.0), IMAGE_SIZE))
    assert metrics["keypoint/mean_location_error_px"].item() == pytest.approx(3.0, abs=1e-9)
    assert metrics["keypoint/matched_fraction"].item() == 1.0


def test_triplet_loss_grows_as_descriptors_become_ambiguous():
    source = _outputs(seed=2)
    warp_fn = homography_warp_fn(_translation(0.0), IMAGE_SIZE)
    loss_fn = KeypointLoss(location_weight=0, score_weight=0, score_consistency_weight=0)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(source["desc"].shape, generator=g, dtype=torch.float64)
    losses = []
    for level in (0.0, 0.3, 1.0, 3.0):
        target = dict(source, desc=F.normalize(source["desc"] + level * noise, dim=1))
        losses.append(loss_fn(source, target, warp_fn)[1]["keypoint/descriptor_loss"].item())
    assert losses[0] == pytest.approx(0.0, abs=1e-5)
    # Nearly random target descriptors: the positive is on average no closer than the hardest negative, so the
    # loss exceeds the margin.
    assert losses == sorted(losses) and losses[-1] > 0.2


def test_score_loss_favours_high_scores_on_accurate_keypoints():
    source = _outputs(seed=3, jitter=0.0)
    target = {key: value.clone() for key, value in source.items()}
    target["coord"][:, :, :, : Wc // 2] += 2.0  # left half of the target keypoints is off by 2*sqrt(2) px
    loss_fn = KeypointLoss(location_weight=0, descriptor_weight=0, score_consistency_weight=0)
    warp_fn = homography_warp_fn(_translation(0.0), IMAGE_SIZE)
    good_left = dict(source, score=source["score"].clone())
    good_left["score"][..., : Wc // 2], good_left["score"][..., Wc // 2 :] = 0.1, 0.9
    bad_left = dict(source, score=source["score"].clone())
    bad_left["score"][..., : Wc // 2], bad_left["score"][..., Wc // 2 :] = 0.9, 0.1
    loss_good, _ = loss_fn(good_left, dict(target, score=good_left["score"]), warp_fn)
    loss_bad, _ = loss_fn(bad_left, dict(target, score=bad_left["score"]), warp_fn)
    assert loss_good.item() < 0 < loss_bad.item()


def test_nothing_visible_is_zero_with_finite_gradients():
    out = {key: value.clone().requires_grad_(True) for key, value in _outputs().items()}

    def nowhere(points):
        return torch.full_like(points, float("nan")), torch.zeros(points.shape[:2], dtype=torch.bool)

    loss, metrics = KeypointLoss()(out, out, nowhere)
    loss.backward()
    assert loss.item() == 0.0 and metrics["keypoint/visible_fraction"].item() == 0.0
    for value in out.values():
        assert torch.isfinite(value.grad).all()


def test_gradients_are_finite_at_a_perfect_match():
    source = {key: value.clone().requires_grad_(True) for key, value in _outputs(seed=4).items()}
    target = {key: value.clone().requires_grad_(True) for key, value in _outputs(seed=4).items()}
    loss, _ = KeypointLoss()(source, target, homography_warp_fn(_translation(0.0), IMAGE_SIZE))
    loss.backward()
    for out in (source, target):
        for value in out.values():
            assert torch.isfinite(value.grad).all()


def test_output_contract_is_checked():
    out = _outputs()
    with pytest.raises(ValueError, match="desc"):
        KeypointLoss()(out, {"score": out["score"], "coord": out["coord"]}, homography_warp_fn(_translation(0.0)))
    with pytest.raises(ValueError, match="coord"):
        bad = dict(out, coord=out["coord"][:, :1])
        KeypointLoss()(bad, out, homography_warp_fn(_translation(0.0)))


def test_apply_homography_matches_opencv_and_flags_the_horizon():
    H = torch.tensor([[[1.1, 0.05, 3.0], [-0.02, 0.95, -2.0], [1e-3, 2e-3, 1.0]]], dtype=torch.float64)
    points = torch.rand(1, 20, 2, dtype=torch.float64) * 50
    mapped, valid = apply_homography(H, points)
    expected = cv2.perspectiveTransform(points.numpy(), H[0].numpy())
    np.testing.assert_allclose(mapped.numpy(), expected, atol=1e-10)
    assert valid.all()
    behind, valid = apply_homography(H, torch.tensor([[[-2000.0, 0.0]]], dtype=torch.float64))  # w = -1
    assert not valid.any() and torch.isfinite(behind).all()


def test_random_homographies_keep_the_warped_image_inside_the_source():
    H = sample_random_homography(16, 48, 64, perspective_amplitude=0.3, max_angle_deg=30,
                                 generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    again = sample_random_homography(16, 48, 64, perspective_amplitude=0.3, max_angle_deg=30,
                                     generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(H, again) and torch.allclose(H[:, 2, 2], torch.ones(16, dtype=torch.float64))
    corners = torch.tensor([[0.0, 0.0], [63.0, 0.0], [63.0, 47.0], [0.0, 47.0]], dtype=torch.float64)
    source_corners, valid = apply_homography(torch.linalg.inv(H), corners.expand(16, 4, 2))
    assert valid.all()
    tol = 1e-6
    assert (source_corners[..., 0] >= -tol).all() and (source_corners[..., 0] <= 63 + tol).all()
    assert (source_corners[..., 1] >= -tol).all() and (source_corners[..., 1] <= 47 + tol).all()
    assert not torch.allclose(H[0], H[1])


def test_warp_image_homography_shifts_pixels_and_matches_opencv():
    image = torch.rand(1, 3, 12, 16, dtype=torch.float64)
    warped, valid = warp_image_homography(image, _translation(2.0))
    assert torch.allclose(warped[..., 2:], image[..., :-2], atol=1e-9)
    assert not valid[..., :2].any() and valid[..., 2:].all()

    ys, xs = np.mgrid[0:48, 0:64]
    smooth = np.stack([np.sin(xs / 7.0), np.cos(ys / 5.0), np.sin((xs + ys) / 9.0)], axis=-1) * 0.5 + 0.5
    H = sample_random_homography(1, 48, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    warped, valid = warp_image_homography(torch.from_numpy(smooth).permute(2, 0, 1)[None], H)
    reference = cv2.warpPerspective(smooth, H[0].numpy(), (64, 48), flags=cv2.INTER_LINEAR)
    assert valid.all()
    np.testing.assert_allclose(warped[0].permute(1, 2, 0).numpy(), reference, atol=2e-3)
