import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from skimage.metrics import structural_similarity

from priordepth_core.losses.photometric import PhotometricLoss, reprojection_error, ssim_dissimilarity


def _numpy_box_ssim_dissimilarity(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Independent reference: mirror padding (numpy 'reflect' == torch ReflectionPad2d) and explicit 3x3 windows."""
    def window_mean(a):
        padded = np.pad(a, 1, mode="reflect")
        return sliding_window_view(padded, (3, 3)).mean(axis=(-1, -2))

    c1, c2 = 0.01**2, 0.03**2
    mx, my = window_mean(x), window_mean(y)
    vx, vy = window_mean(x * x) - mx**2, window_mean(y * y) - my**2
    cxy = window_mean(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return np.clip((1 - ssim) / 2, 0, 1)


def test_ssim_matches_numpy_box_reference_including_borders():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 9, 11))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    ours = ssim_dissimilarity(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    for b in range(2):
        for c in range(3):
            np.testing.assert_allclose(ours[b, c], _numpy_box_ssim_dissimilarity(x[b, c], y[b, c]), atol=1e-12)


def test_ssim_interior_matches_skimage_uniform_window():
    # skimage pads with half-sample symmetry, so only windows that lie fully inside the image are comparable.
    rng = np.random.default_rng(1)
    x = rng.random((12, 14))
    y = np.clip(0.7 * x + 0.3 * rng.random((12, 14)), 0, 1)
    _, ssim_map = structural_similarity(x, y, win_size=3, data_range=1.0, gaussian_weights=False,
                                        use_sample_covariance=False, K1=0.01, K2=0.03, full=True)
    ours = ssim_dissimilarity(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(ours[1:-1, 1:-1], ((1 - ssim_map) / 2)[1:-1, 1:-1], atol=1e-12)


def test_reprojection_error_is_weighted_ssim_plus_l1():
    x = torch.rand(1, 3, 6, 7, dtype=torch.float64)
    y = torch.rand(1, 3, 6, 7, dtype=torch.float64)
    expected = 0.85 * ssim_dissimilarity(x, y).mean(1, keepdim=True) + 0.15 * (x - y).abs().mean(1, keepdim=True)
    assert torch.allclose(reprojection_error(x, y), expected, atol=1e-14)
    assert torch.allclose(reprojection_error(x, x), torch.zeros(1, 1, 6, 7, dtype=torch.float64), atol=1e-12)


def _scene(B=1, S=2, H=10, W=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(B, 3, H, W, generator=g, dtype=torch.float64)
    noise = torch.rand(B, S, 3, H, W, generator=g, dtype=torch.float64)
    return target, noise


def test_minimum_over_sources_picks_the_better_source_per_pixel():
    target, noise = _scene()
    W = target.shape[-1]
    warped = noise.clone()
    warped[:, 0, ..., : W // 2] = target[..., : W // 2]  # source 0 explains the left half
    warped[:, 1, ..., W // 2 :] = target[..., W // 2 :]  # source 1 the right half
    loss, metrics = PhotometricLoss(alpha=0.0, automask=False)(target, warped)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    # Averaging the sources instead of taking the minimum would leave half of each source's error.
    assert (warped - target.unsqueeze(1)).abs().mean().item() > 0.1
    assert metrics["photometric/excluded_fraction"].item() == 0.0


def test_invalid_pixels_cannot_win_and_all_invalid_pixels_are_excluded():
    target, noise = _scene()
    W = target.shape[-1]
    warped = torch.stack([target, noise[:, 1]], dim=1)  # source 0 perfect, source 1 noise
    valid = torch.ones(1, 2, 1, *target.shape[-2:], dtype=torch.bool)
    valid[:, 0, ..., : W // 2] = False  # source 0 is invalid on the left half
    loss, _ = PhotometricLoss(alpha=0.0, automask=False)(target, warped, valid)
    left_error = (noise[:, 1] - target).abs().mean(1)[..., : W // 2]
    assert loss.item() == pytest.approx(left_error.sum().item() / target[0, 0].numel(), rel=1e-12)

    valid[:, 1, ..., : W // 2] = False  # now the left half is valid in no source: excluded
    loss, metrics = PhotometricLoss(alpha=0.0, automask=False)(target, warped, valid)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert metrics["photometric/excluded_fraction"].item() == pytest.approx(0.5)
    assert not metrics["photometric/included"][..., : W // 2].any()


def test_pair_valid_drops_a_whole_source():
    target, noise = _scene()
    warped = torch.stack([target, noise[:, 1]], dim=1)
    loss, _ = PhotometricLoss(alpha=0.0, automask=False)(target, warped, pair_valid=torch.tensor([[False, True]]))
    assert loss.item() == pytest.approx((noise[:, 1] - target).abs().mean().item(), rel=1e-12)


def test_automask_masks_a_static_pair():
    # Camera did not move: the unwarped sources equal the target, a (wrong) warp cannot beat them.
    target, noise = _scene(seed=3)
    sources = target.unsqueeze(1).repeat(1, 2, 1, 1, 1)
    loss, metrics = PhotometricLoss()(target, noise, sources=sources)
    assert metrics["photometric/automask_fraction"].item() == 1.0
    assert abs(loss.item()) < 1e-4  # only the 1e-5 tie-break noise remains
    assert metrics["photometric/automask"].all()


def test_automask_keeps_pixels_that_the_warp_explains():
    target, noise = _scene(seed=4)
    warped = target.unsqueeze(1).repeat(1, 2, 1, 1, 1)  # perfect synthesis of a moving camera
    loss, metrics = PhotometricLoss()(target, warped, sources=noise)
    assert metrics["photometric/automask_fraction"].item() == 0.0
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_automask_requires_sources():
    target, noise = _scene()
    with pytest.raises(ValueError, match="sources"):
        PhotometricLoss()(target, noise)


def test_multiscale_is_the_mean_over_scales():
    target, noise = _scene(seed=5)
    other = (noise * 0.5 + 0.25).clamp(0, 1)
    loss_fn = PhotometricLoss(automask=False)
    both, _ = loss_fn(target, [noise, other])
    first, _ = loss_fn(target, noise)
    second, _ = loss_fn(target, other)
    assert both.item() == pytest.approx((first.item() + second.item()) / 2, rel=1e-12)
    with pytest.raises(ValueError, match="scales"):
        loss_fn(target, [noise, other], valid=[torch.ones(1, 2, 1, 10, 12, dtype=torch.bool)])


def test_shape_errors_name_the_argument():
    target, noise = _scene()
    with pytest.raises(ValueError, match="warped"):
        PhotometricLoss(automask=False)(target, noise[..., :5])
    with pytest.raises(ValueError, match="pair_valid"):
        PhotometricLoss(automask=False)(target, noise, pair_valid=torch.ones(1, 3, dtype=torch.bool))


def test_all_masked_is_zero_with_finite_gradients():
    target, noise = _scene()
    warped = noise.clone().requires_grad_(True)
    valid = torch.zeros(1, 2, 1, 10, 12, dtype=torch.bool)
    loss, metrics = PhotometricLoss()(target, warped, valid, sources=noise)
    loss.backward()
    assert loss.item() == 0.0 and metrics["photometric/excluded_fraction"].item() == 1.0
    assert torch.isfinite(warped.grad).all() and warped.grad.abs().sum() == 0


def test_gradcheck_with_masks():
    target, noise = _scene(H=5, W=6, seed=7)
    valid = torch.rand(1, 2, 1, 5, 6, generator=torch.Generator().manual_seed(0)) > 0.3
    loss_fn = PhotometricLoss(automask=False)
    warped = noise.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: loss_fn(target, w, valid)[0], (warped,))


def test_float16_inputs_are_computed_in_float32():
    target, noise = _scene(seed=8)
    loss32, _ = PhotometricLoss(automask=False)(target.float(), noise.float())
    loss16, _ = PhotometricLoss(automask=False)(target.half(), noise.half())
    assert loss16.dtype == torch.float32
    assert loss16.item() == pytest.approx(loss32.item(), rel=2e-3)
