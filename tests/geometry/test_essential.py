"""Essential-matrix pose: exactness, robustness against OpenCV, degenerate scenes and gradients."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from priordepth_core.geometry.pose import make_two_view_problems, solve_essential, solve_essential_ransac
from priordepth_core.geometry.se3 import rotation_error_deg, translation_direction_error_deg


def _problems(batch, n, seed=0, **kw):
    return make_two_view_problems(batch, n, generator=torch.Generator().manual_seed(seed), **kw)


def _errors(est, p):
    return rotation_error_deg(est.R.double(), p.R.double()), translation_direction_error_deg(est.t.double(),
                                                                                             p.t.double())


def test_noise_free_general_scene_is_exact():
    p = _problems(4, 100)
    est = solve_essential(p.x1, p.x2, p.K)
    r, t = _errors(est, p)
    assert est.valid.all()
    assert r.max() < 1e-6 and t.max() < 1e-6
    assert torch.allclose(est.t.norm(dim=-1), torch.ones(4, dtype=torch.float64))


def _identifiable_outlier_weights(p, min_distance_px=3.0):
    """Weights that drop the outliers lying by chance within ``min_distance_px`` of their true epipolar line.

    Such a point is consistent with the true motion, so no robust estimator can tell it from an inlier; with it in
    the inlier set a noise-free solve is close to, not exactly at, the truth.
    """
    from priordepth_core.geometry.camera import invert_intrinsics
    from priordepth_core.geometry.pose.essential import sampson_distance_sq
    from priordepth_core.geometry.se3 import skew

    K_inv = invert_intrinsics(p.K)
    F = K_inv.transpose(1, 2) @ skew(p.t) @ p.R @ K_inv
    ones = torch.ones_like(p.x1[..., :1])
    r2 = sampson_distance_sq(F[:, None], torch.cat([p.x1, ones], -1), torch.cat([p.x2, ones], -1))[:, 0]
    return (p.inliers | (r2 > min_distance_px**2)).double()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_noise_free_ransac_is_exact(seed):
    p = _problems(4, 200, seed=seed + 1, outlier_ratio=0.2)
    weights = _identifiable_outlier_weights(p)
    est = solve_essential_ransac(p.x1, p.x2, p.K, weights, generator=torch.Generator().manual_seed(seed))
    r, t = _errors(est, p)
    assert est.valid.all()
    assert r.max() < 1e-6 and t.max() < 1e-6
    assert torch.equal(est.inliers, p.inliers)


def test_noise_free_ransac_with_consistent_outliers_is_close():
    """With chance-consistent outliers (within 1 px of their epipolar line) kept, the result stays within 0.1 deg."""
    p = _problems(4, 200, seed=3, outlier_ratio=0.2)
    est = solve_essential_ransac(p.x1, p.x2, p.K, generator=torch.Generator().manual_seed(0))
    r, t = _errors(est, p)
    assert est.valid.all()
    assert r.max() < 0.1 and t.max() < 0.5
    assert (est.inliers == p.inliers).float().mean() > 0.99


def test_minimal_eight_points_are_exact():
    p = _problems(8, 8, seed=2)
    est = solve_essential(p.x1, p.x2, p.K)
    r, t = _errors(est, p)
    assert est.valid.all()
    assert r.max() < 1e-6 and t.max() < 1e-6


def test_float32_input_gives_float32_output():
    p = _problems(2, 100, seed=3, noise_px=0.3, dtype=torch.float32)
    est = solve_essential(p.x1, p.x2, p.K)
    assert est.R.dtype == torch.float32 and est.t.dtype == torch.float32
    r, t = _errors(est, p)
    assert est.valid.all() and r.max() < 0.5 and t.max() < 5.0


def test_ransac_beats_opencv_with_noise_and_outliers():
    p = _problems(32, 500, seed=1, noise_px=0.5, outlier_ratio=0.3)
    est = solve_essential_ransac(p.x1, p.x2, p.K, generator=torch.Generator().manual_seed(0))
    r, t = _errors(est, p)
    cv2.setRNGSeed(0)
    r_cv, t_cv = [], []
    for b in range(p.x1.shape[0]):
        a1, a2, K = p.x1[b].numpy(), p.x2[b].numpy(), p.K[b].numpy()
        E, mask = cv2.findEssentialMat(a1, a2, K, method=cv2.RANSAC, prob=0.999, threshold=1.0)
        _, R, tv, _ = cv2.recoverPose(E[:3], a1, a2, K, mask=mask)
        r_cv.append(rotation_error_deg(torch.from_numpy(R), p.R[b]).item())
        t_cv.append(translation_direction_error_deg(torch.from_numpy(tv[:, 0]), p.t[b]).item())
    ours = (r.median().item(), t.median().item())
    theirs = (float(np.median(r_cv)), float(np.median(t_cv)))
    print(f"median rotation / translation-direction error (deg): ours {ours}, OpenCV {theirs}")
    assert est.valid.all()
    assert ours[0] <= theirs[0] and ours[1] <= theirs[1]


def test_planar_scene_is_flagged_degenerate_not_wrong():
    for noise in (0.0, 0.5):
        p = _problems(4, 100, seed=4, planar=True, noise_px=noise)
        est = solve_essential(p.x1, p.x2, p.K)
        assert not est.valid.any()
        assert est.info["degenerate"].all()
        assert torch.equal(est.R, torch.eye(3, dtype=torch.float64).expand(4, 3, 3))
        assert torch.equal(est.t, torch.zeros(4, 3, dtype=torch.float64))


@pytest.mark.parametrize("noise, bound_deg", [(0.0, 1e-6), (0.5, 0.1)])
def test_pure_rotation_is_flagged_with_accurate_rotation(noise, bound_deg):
    p = _problems(4, 200, seed=5, pure_rotation=True, noise_px=noise)
    est = solve_essential(p.x1, p.x2, p.K)
    assert est.info["pure_rotation"].all() and not est.valid.any()
    assert est.info["rotation_valid"].all()
    assert rotation_error_deg(est.R, p.R).max() < bound_deg
    assert torch.equal(est.t, torch.zeros_like(est.t))


def test_pure_rotation_with_outliers_through_ransac():
    p = _problems(4, 300, seed=6, pure_rotation=True, noise_px=0.5, outlier_ratio=0.3)
    est = solve_essential_ransac(p.x1, p.x2, p.K, generator=torch.Generator().manual_seed(0))
    assert est.info["pure_rotation"].all()
    assert rotation_error_deg(est.R, p.R).max() < 0.1
    assert (est.inliers & ~p.inliers).sum() < 0.02 * p.inliers.numel()


def test_tiny_baseline_is_flagged_as_rotation_with_accurate_rotation():
    # 0.1 % of the scene depth gives about 0.2 px of parallax: below the 1 px default, so it is reported as a
    # rotation; the rotation-only fit is then within 0.2 degrees.
    p = _problems(4, 200, seed=7, baseline_ratio=1e-3)
    est = solve_essential(p.x1, p.x2, p.K)
    assert est.info["pure_rotation"].all()
    assert rotation_error_deg(est.R, p.R).max() < 0.2
    # Without noise the parallax is still exact: with the threshold lowered, the essential pose is accurate.
    est = solve_essential(p.x1, p.x2, p.K, min_parallax_px=1e-3)
    r, t = _errors(est, p)
    assert est.valid.all() and r.max() < 1e-6 and t.max() < 1e-4


def test_gradcheck_wrt_pixels_and_weights():
    p = _problems(1, 12, seed=8, noise_px=0.2)
    w = torch.linspace(0.5, 1.5, 12, dtype=torch.float64)[None]
    x2 = p.x2.clone().requires_grad_(True)
    w = w.requires_grad_(True)

    def f(x2_, w_):
        est = solve_essential(p.x1, x2_, p.K, w_)
        return torch.cat([est.R.flatten(), est.t.flatten()])

    assert solve_essential(p.x1, p.x2, p.K, w).valid.all()
    assert torch.autograd.gradcheck(f, (x2, w), eps=1e-6, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("case", ["zero_weights", "five_points", "pure_rotation", "nan_input", "planar"])
def test_degenerate_input_has_finite_values_and_gradients(case):
    p = _problems(2, 20, seed=9, pure_rotation=case == "pure_rotation", planar=case == "planar")
    x1, x2 = p.x1.clone(), p.x2.clone()
    w = torch.ones(2, 20, dtype=torch.float64)
    if case == "zero_weights":
        w = torch.zeros_like(w)
    if case == "five_points":
        w[:, 5:] = 0
    if case == "nan_input":
        x2[:, :15] = float("nan")
    x1.requires_grad_(True)
    x2.requires_grad_(True)
    w.requires_grad_(True)
    est = solve_essential(x1, x2, p.K, w)
    assert not est.valid.any()
    assert torch.isfinite(est.R).all() and torch.isfinite(est.t).all()
    (est.R.sum() + est.t.sum()).backward()
    for g in (x1.grad, x2.grad, w.grad):
        assert g is not None and torch.isfinite(g).all()
    if case != "pure_rotation":
        assert torch.equal(est.R.detach(), torch.eye(3, dtype=torch.float64).expand(2, 3, 3))


def test_ransac_gradients_reach_points_and_weights():
    p = _problems(2, 100, seed=10, noise_px=0.5, outlier_ratio=0.2)
    x2 = p.x2.clone().requires_grad_(True)
    w = torch.ones(2, 100, dtype=torch.float64, requires_grad=True)
    est = solve_essential_ransac(p.x1, x2, p.K, w, generator=torch.Generator().manual_seed(0))
    (est.R.sum() + est.t.sum()).backward()
    assert torch.isfinite(x2.grad).all() and x2.grad.abs().sum() > 0
    assert torch.isfinite(w.grad).all() and w.grad[est.inliers].abs().sum() > 0
    assert w.grad[~est.inliers].abs().max() == 0


def test_wrong_shapes_and_dtypes_raise():
    p = _problems(1, 20)
    with pytest.raises(ValueError, match="x2"):
        solve_essential(p.x1, p.x2[:, :10], p.K)
    with pytest.raises(ValueError, match="K"):
        solve_essential(p.x1, p.x2, p.K[0])
    with pytest.raises(ValueError, match="weights"):
        solve_essential(p.x1, p.x2, p.K, torch.ones(1, 19, dtype=torch.float64))
    with pytest.raises(ValueError, match="x1"):
        solve_essential(p.x1.long(), p.x2, p.K)
    with pytest.raises(ValueError, match="dtype"):
        solve_essential(p.x1.float(), p.x2, p.K)
    with pytest.raises(ValueError, match="num_hypotheses"):
        solve_essential_ransac(p.x1, p.x2, p.K, num_hypotheses=0)
