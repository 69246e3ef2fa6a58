import torch

from priordepth_core.geometry.pose import solve_procrustes
from priordepth_core.geometry.pose.ransac import gather_sets, msac_score, sample_minimal_sets, select_best
from priordepth_core.geometry.se3 import random_rotation, rotation_error_deg


def _problem(B=6, N=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = random_rotation(B, generator=g, dtype=torch.float64)
    t = torch.randn(B, 3, generator=g, dtype=torch.float64)
    p1 = torch.randn(B, N, 3, generator=g, dtype=torch.float64)
    return R, t, p1, p1 @ R.transpose(1, 2) + t[:, None]


def test_procrustes_exact():
    R, t, p1, p2 = _problem()
    est = solve_procrustes(p1, p2)
    assert est.valid.all()
    assert rotation_error_deg(est.R, R).max() < 1e-9
    assert (est.t - t).abs().max() < 1e-12


def test_procrustes_weights_ignore_outliers_and_scale():
    R, t, p1, p2 = _problem()
    p2 = p2.clone()
    p2[:, :10] += 5.0
    w = torch.ones(p1.shape[:2], dtype=torch.float64)
    w[:, :10] = 0
    est = solve_procrustes(p1, p2, w)
    assert rotation_error_deg(est.R, R).max() < 1e-9
    est_s = solve_procrustes(p1, 2.5 * p2, w, with_scale=True)
    assert torch.allclose(est_s.info["scale"], torch.full((6,), 2.5, dtype=torch.float64))


def test_procrustes_rotation_only():
    R, _, p1, _ = _problem()
    bearings1 = p1 / p1.norm(dim=-1, keepdim=True)
    est = solve_procrustes(bearings1, bearings1 @ R.transpose(1, 2), with_translation=False)
    assert rotation_error_deg(est.R, R).max() < 1e-9 and est.t.abs().max() == 0


def test_procrustes_degenerate_is_flagged_with_finite_gradients():
    R, t, p1, p2 = _problem(B=3)
    p1 = p1.clone()
    line = torch.tensor([1.0, 2, 3], dtype=torch.float64)
    p1[0] = torch.linspace(0, 1, p1.shape[1], dtype=torch.float64)[:, None] * line
    w = torch.ones(p1.shape[:2], dtype=torch.float64)
    w[1] = 0
    p1.requires_grad_(True)
    est = solve_procrustes(p1, p2, w)
    assert est.valid.tolist() == [False, False, True]
    assert torch.equal(est.R[0], torch.eye(3, dtype=torch.float64))
    (est.R.sum() + est.t.sum()).backward()
    assert torch.isfinite(p1.grad).all()


def test_procrustes_gradcheck():
    _, _, p1, p2 = _problem(B=2, N=8)
    p1.requires_grad_(True)
    w = torch.rand(2, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).add(0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: tuple(solve_procrustes(a, p2, b)), (p1, w))


def test_sampling_respects_weights_and_distinctness():
    w = torch.zeros(2, 20)
    w[0, :5] = 1.0
    w[1] = 1.0
    idx = sample_minimal_sets(w, num_hypotheses=200, sample_size=4, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (2, 200, 4)
    assert (idx[0] < 5).all()
    sorted_idx = idx.sort(-1).values
    assert (sorted_idx[..., 1:] != sorted_idx[..., :-1]).all()
    assert len(torch.unique(idx[1])) == 20
    values = torch.arange(40.0).reshape(2, 20)
    assert torch.equal(gather_sets(values, idx), values.gather(1, idx.flatten(1)).reshape(2, 200, 4))


def test_msac_selects_lowest_cost():
    residuals = torch.tensor([[[0.0, 100.0, 0.1], [0.1, 0.1, 0.1]]])  # 2 hypotheses, 3 points
    cost, inliers = msac_score(residuals, threshold=1.0)
    best, best_inliers, best_h = select_best(cost, inliers, torch.tensor([[10.0, 20.0]]))
    assert best.item() == 1 and best_h.item() == 20.0 and best_inliers.all()
    cost_nan, inl_nan = msac_score(torch.tensor([[[float("nan"), 0.0]]]), threshold=1.0)
    assert cost_nan.item() == 1.0 and inl_nan.tolist() == [[[False, True]]]
