import cv2
import numpy as np
import pytest
import torch

from priordepth_core.geometry.pose import solve_pnp, solve_pnp_ransac
from priordepth_core.geometry.pose.synthetic_problems import NOMINAL_DEPTH, make_two_view_problems
from priordepth_core.geometry.se3 import rotation_error_deg, so3_exp, translation_direction_error_deg

F64 = torch.float64


def _problems(batch, num_points, seed=0, **kwargs):
    return make_two_view_problems(batch, num_points, generator=torch.Generator().manual_seed(seed), **kwargs)


def _relative_t_error(t_est, t_true):
    return (t_est - t_true).norm(dim=-1) / t_true.norm(dim=-1)


@pytest.mark.parametrize(("planar", "num_points"), [(False, 6), (False, 200), (True, 4), (True, 5), (True, 200)])
def test_noise_free_is_exact(planar, num_points):
    p = _problems(8, num_points, planar=planar)
    est = solve_pnp(p.points1, p.x2, p.K)
    assert est.valid.all()
    assert rotation_error_deg(est.R, p.R).max() < 1e-6
    assert _relative_t_error(est.t, p.t).max() < 1e-8
    assert est.info["planar"].all() == planar
    assert est.info["rms_px"].max() < 1e-8


def test_tiny_baseline_and_pure_rotation():
    p = _problems(8, 100, baseline_ratio=1e-3, seed=1)
    est = solve_pnp(p.points1, p.x2, p.K)
    assert est.valid.all()
    assert rotation_error_deg(est.R, p.R).max() < 1e-6
    assert _relative_t_error(est.t, p.t).max() < 1e-8

    p = _problems(8, 100, pure_rotation=True, seed=2)
    est = solve_pnp(p.points1, p.x2, p.K)
    assert est.valid.all()
    assert rotation_error_deg(est.R, p.R).max() < 1e-6
    assert est.t.norm(dim=-1).max() < 1e-8 * NOMINAL_DEPTH


def test_float32_input_keeps_dtype_and_accuracy():
    p = _problems(4, 100, noise_px=0.0, seed=3, dtype=torch.float32)
    est = solve_pnp(p.points1, p.x2, p.K)
    assert est.R.dtype == torch.float32 and est.t.dtype == torch.float32
    assert est.valid.all()
    assert rotation_error_deg(est.R.double(), p.R.double()).max() < 1e-2


def test_weights_and_robust_losses_suppress_outliers():
    p = _problems(8, 100, noise_px=0.5, outlier_ratio=0.15, seed=4)
    oracle = solve_pnp(p.points1, p.x2, p.K, weights=p.inliers.double())
    plain = solve_pnp(p.points1, p.x2, p.K)
    oracle_err = rotation_error_deg(oracle.R, p.R).median()
    assert oracle_err < 0.05
    assert rotation_error_deg(plain.R, p.R).median() > 10 * oracle_err  # least squares is hurt by outliers ...
    for robust in ("huber", "cauchy"):  # ... robust losses are not (starting from the same linear initialisation)
        est = solve_pnp(p.points1, p.x2, p.K, robust=robust, iterations=20)
        assert est.valid.all()
        assert rotation_error_deg(est.R, p.R).median() < 2 * oracle_err


def test_init_seeds_and_cannot_hurt():
    p = _problems(4, 50, seed=5)
    est = solve_pnp(p.points1, p.x2, p.K, iterations=0, init=(p.R, p.t))
    assert rotation_error_deg(est.R, p.R).max() < 1e-9 and _relative_t_error(est.t, p.t).max() < 1e-10
    wrong = (so3_exp(torch.full((4, 3), 2.0, dtype=F64)) @ p.R, -p.t)
    est = solve_pnp(p.points1, p.x2, p.K, init=wrong)
    assert rotation_error_deg(est.R, p.R).max() < 1e-6


def test_degenerate_inputs_are_flagged_with_finite_gradients():
    p = _problems(7, 20, noise_px=0.3, seed=6)
    X, x2, w = p.points1.clone(), p.x2.clone(), torch.ones(7, 20, dtype=F64)
    w[0] = 0  # all weights zero
    w[1, 3:] = 0  # three points
    X[2] = torch.linspace(1, 2, 20, dtype=F64)[:, None] * torch.tensor([0.3, -0.2, 4.0], dtype=F64)  # collinear
    X2 = p.points2[3]
    X[3] = (-X2 - p.t[3]) @ p.R[3]  # every point behind camera 2 (same pixels, mirrored through the centre)
    X[4, 5, 1] = float("nan")  # NaN point: dropped, the rest still solves
    x2[5, :, 0] = float("nan")  # NaN everywhere
    K = p.K.clone()
    K[6, 0, 0] = float("inf")
    X.requires_grad_(True)
    x2.requires_grad_(True)
    w.requires_grad_(True)
    est = solve_pnp(X, x2, K, w)
    assert est.valid.tolist() == [False, False, False, False, True, False, False]
    invalid = ~est.valid
    assert torch.equal(est.R[invalid], torch.eye(3, dtype=F64).expand(6, 3, 3))
    assert torch.equal(est.t[invalid], torch.zeros(6, 3, dtype=F64))
    assert rotation_error_deg(est.R[4], p.R[4]) < 0.2
    (est.R.sum() + est.t.sum()).backward()
    for grad in (X.grad, x2.grad, w.grad):
        assert torch.isfinite(grad).all()
    assert X.grad[4].abs().sum() > 0 and X.grad[:4].abs().sum() == 0


def test_gradcheck_least_squares():
    p = _problems(1, 10, noise_px=1.0, seed=7)
    w = torch.rand(1, 10, dtype=F64, generator=torch.Generator().manual_seed(1)) + 0.5
    inputs = tuple(a.clone().requires_grad_(True) for a in (p.points1, p.x2, w, p.K))

    def solve(points3d, x2, weights, K):
        return tuple(solve_pnp(points3d, x2, K, weights, iterations=15))

    assert torch.autograd.gradcheck(solve, inputs, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("robust", ["huber", "cauchy"])
def test_gradcheck_robust(robust):
    p = _problems(1, 10, noise_px=2.0, seed=8)
    w = torch.rand(1, 10, dtype=F64, generator=torch.Generator().manual_seed(2)) + 0.5
    inputs = tuple(a.clone().requires_grad_(True) for a in (p.points1, p.x2, w))

    def solve(points3d, x2, weights):
        # IRLS converges linearly, hence more iterations than least squares to reach the optimum the gradient is of.
        return tuple(solve_pnp(points3d, x2, p.K, weights, iterations=40, robust=robust, robust_scale_px=1.5))

    assert torch.autograd.gradcheck(solve, inputs, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_input_validation():
    p = _problems(2, 10)
    X, x2, K = p.points1, p.x2, p.K
    with pytest.raises(ValueError, match="points3d"):
        solve_pnp(X[..., :2], x2, K)
    with pytest.raises(ValueError, match="x2"):
        solve_pnp(X, x2[:, :9], K)
    with pytest.raises(ValueError, match="K"):
        solve_pnp(X, x2, K[:, :2])
    with pytest.raises(ValueError, match="x2"):
        solve_pnp(X, x2.float(), K)
    with pytest.raises(ValueError, match="points3d"):
        solve_pnp(X.long(), x2, K)
    with pytest.raises(ValueError, match="weights"):
        solve_pnp(X, x2, K, torch.ones(2, 11, dtype=F64))
    with pytest.raises(ValueError, match="init"):
        solve_pnp(X, x2, K, init=(p.R,))
    with pytest.raises(ValueError, match="init"):
        solve_pnp(X, x2, K, init=(p.R, p.t[:, :2]))
    with pytest.raises(ValueError, match="robust"):
        solve_pnp(X, x2, K, robust="tukey")
    with pytest.raises(ValueError, match="weights"):
        solve_pnp_ransac(X, x2, K, torch.ones(2, 10, dtype=torch.int64))


def _opencv_ransac(p, flag, threshold_px):
    R_cv, t_cv = [], []
    for b in range(p.R.shape[0]):
        ok, rvec, tvec, _ = cv2.solvePnPRansac(p.points1[b].numpy(), p.x2[b].numpy(), p.K[b].numpy(), None,
                                               flags=flag, reprojectionError=threshold_px, confidence=0.999,
                                               iterationsCount=10000)
        assert ok
        R_cv.append(cv2.Rodrigues(rvec)[0])
        t_cv.append(tvec[:, 0])
    return torch.from_numpy(np.stack(R_cv)), torch.from_numpy(np.stack(t_cv))


def _median_errors(R, t, p):
    return rotation_error_deg(R, p.R).median().item(), translation_direction_error_deg(t, p.t).median().item()


@pytest.mark.parametrize("planar", [False, True], ids=["general", "planar"])
def test_ransac_no_worse_than_opencv(planar):
    p = _problems(32, 500, noise_px=0.5, outlier_ratio=0.3, planar=planar, seed=9)
    est = solve_pnp_ransac(p.points1, p.x2, p.K, threshold_px=1.0, generator=torch.Generator().manual_seed(0))
    assert est.valid.all()
    ours = _median_errors(est.R, est.t, p)
    flags = {"ITERATIVE": cv2.SOLVEPNP_ITERATIVE, "EPNP": cv2.SOLVEPNP_EPNP}
    if planar:
        flags["IPPE"] = cv2.SOLVEPNP_IPPE
    references = {name: _median_errors(*_opencv_ransac(p, flag, 1.0), p) for name, flag in flags.items()}
    print(f"\n{'planar' if planar else 'general'}: median rotation / translation-direction error (deg)")
    print(f"  ours            {ours[0]:.4f} / {ours[1]:.4f}")
    for name, ref in references.items():
        print(f"  OpenCV {name:<9}{ref[0]:.4f} / {ref[1]:.4f}")
    for ref in references.values():
        assert ours[0] <= ref[0] and ours[1] <= ref[1]
    # Inliers found are the true ones, bar noisy inliers beyond 1 px (about e^-2 of them for 0.5 px noise).
    assert (est.inliers & ~p.inliers).sum() <= 0.02 * (~p.inliers).sum()
    assert est.inliers.sum() >= 0.8 * p.inliers.sum()


def test_planar_least_squares_no_worse_than_ippe():
    p = _problems(96, 200, noise_px=0.5, planar=True, seed=10)
    est = solve_pnp(p.points1, p.x2, p.K)
    assert est.valid.all()
    R_cv, t_cv = [], []
    for b in range(p.R.shape[0]):
        ok, rvec, tvec = cv2.solvePnP(p.points1[b].numpy(), p.x2[b].numpy(), p.K[b].numpy(), None,
                                      flags=cv2.SOLVEPNP_IPPE)
        assert ok
        R_cv.append(cv2.Rodrigues(rvec)[0])
        t_cv.append(tvec[:, 0])
    R_cv, t_cv = torch.from_numpy(np.stack(R_cv)), torch.from_numpy(np.stack(t_cv))
    ours, ippe = _median_errors(est.R, est.t, p), _median_errors(R_cv, t_cv, p)
    ours_t, ippe_t = ((t - p.t).norm(dim=-1).median().item() for t in (est.t, t_cv))
    print(f"\nplanar, no outliers (rotation / translation direction deg, translation m): ours {ours[0]:.4f} / "
          f"{ours[1]:.4f} / {ours_t:.5f}, IPPE {ippe[0]:.4f} / {ippe[1]:.4f} / {ippe_t:.5f}")
    assert ours[0] <= ippe[0] and ours[1] <= ippe[1] and ours_t <= ippe_t

    # Ours is the least-squares optimum that IPPE approximates: its reprojection error is never larger.
    def rms(R, t):
        proj = p.points1 @ R.transpose(1, 2) + t[:, None]
        pix = proj[..., :2] / proj[..., 2:] @ p.K[:, :2, :2].transpose(1, 2) + p.K[:, None, :2, 2]
        return (pix - p.x2).square().sum(-1).mean(-1).sqrt()

    assert (rms(est.R, est.t) <= rms(R_cv, t_cv) + 1e-9).all()


def test_ransac_gradients_reach_inliers_only():
    p = _problems(2, 60, noise_px=0.5, outlier_ratio=0.3, seed=11)
    X = p.points1.clone().requires_grad_(True)
    x2 = p.x2.clone().requires_grad_(True)
    w = torch.ones(2, 60, dtype=F64, requires_grad=True)
    est = solve_pnp_ransac(X, x2, p.K, w, threshold_px=2.0, generator=torch.Generator().manual_seed(0))
    R, t, inliers = est
    assert est.valid.all() and rotation_error_deg(R, p.R).max() < 0.1
    (R.sum() + t.sum()).backward()
    for grad in (X.grad, x2.grad, w.grad):
        assert torch.isfinite(grad).all()
    assert x2.grad.norm(dim=-1)[~inliers].max() == 0 and x2.grad.norm(dim=-1)[inliers].min() > 0
    assert w.grad[inliers].abs().sum() > 0
    assert est.info["num_inliers"].tolist() == inliers.sum(-1).tolist()


def test_ransac_init_hypothesis_is_used():
    # 80 % outliers and a single sampled hypothesis: the sample almost surely fails, the seed must carry the solve.
    p = _problems(4, 100, noise_px=0.5, outlier_ratio=0.8, seed=12)
    est = solve_pnp_ransac(p.points1, p.x2, p.K, num_hypotheses=1, init=(p.R, p.t),
                           generator=torch.Generator().manual_seed(0))
    assert est.valid.all() and est.info["from_init"].all()
    assert rotation_error_deg(est.R, p.R).max() < 0.2


def test_ransac_is_reproducible_and_unrefined_mode_is_detached():
    p = _problems(2, 80, noise_px=0.5, outlier_ratio=0.2, seed=13)
    X = p.points1.clone().requires_grad_(True)
    a = solve_pnp_ransac(X, p.x2, p.K, generator=torch.Generator().manual_seed(5))
    b = solve_pnp_ransac(X, p.x2, p.K, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.R, b.R) and torch.equal(a.inliers, b.inliers)
    fast = solve_pnp_ransac(X, p.x2, p.K, refine=False, generator=torch.Generator().manual_seed(5))
    assert not fast.R.requires_grad and fast.valid.all()
    assert rotation_error_deg(fast.R, p.R).max() < 0.2


def test_ransac_degenerate_inputs_do_not_raise():
    p = _problems(3, 40, seed=14)
    w = torch.ones(3, 40, dtype=F64)
    w[0] = 0
    X = p.points1.clone()
    X[1] = (-p.points2[1] - p.t[1]) @ p.R[1]  # behind camera 2
    est = solve_pnp_ransac(X, p.x2, p.K, w)
    assert est.valid.tolist() == [False, False, True]
    assert torch.equal(est.R[0], torch.eye(3, dtype=F64)) and est.inliers[0].sum() == 0
    few = solve_pnp_ransac(p.points1[:, :3], p.x2[:, :3], p.K)
    assert not few.valid.any() and torch.isfinite(few.R).all()
    planar_four = _problems(2, 4, planar=True, seed=15)
    est = solve_pnp_ransac(planar_four.points1, planar_four.x2, planar_four.K)
    assert est.valid.all() and rotation_error_deg(est.R, planar_four.R).max() < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("outlier_ratio", [0.0, 0.3, 0.5])
@pytest.mark.parametrize("planar", [False, True], ids=["general", "planar"])
def test_ransac_sweep_against_opencv(outlier_ratio, planar):
    p = _problems(64, 500, noise_px=1.0, outlier_ratio=outlier_ratio, planar=planar, seed=16)
    est = solve_pnp_ransac(p.points1, p.x2, p.K, threshold_px=2.0, num_hypotheses=512,
                           generator=torch.Generator().manual_seed(0))
    assert est.valid.all()
    ours = _median_errors(est.R, est.t, p)
    ref = _median_errors(*_opencv_ransac(p, cv2.SOLVEPNP_ITERATIVE, 2.0), p)
    print(f"\n{outlier_ratio:.0%} outliers, planar={planar}: ours {ours}, OpenCV ITERATIVE {ref}")
    assert ours[0] <= ref[0] and ours[1] <= ref[1]


def test_ransac_float32_input():
    p = _problems(4, 200, noise_px=0.5, outlier_ratio=0.3, seed=17, dtype=torch.float32)
    est = solve_pnp_ransac(p.points1, p.x2, p.K, generator=torch.Generator().manual_seed(0))
    assert est.R.dtype == torch.float32 and est.t.dtype == torch.float32 and est.valid.all()
    assert rotation_error_deg(est.R.double(), p.R.double()).max() < 0.1
