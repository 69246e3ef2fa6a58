"""Midpoint triangulation, translation-scale recovery and the synthetic two-view problems."""

from __future__ import annotations

import pytest
import torch

from priordepth_core.geometry.camera import project_points
from priordepth_core.geometry.pose import (
    make_two_view_problems,
    recover_translation_scale,
    triangulate,
    triangulate_with_info,
)


def _problems(batch, n, seed=0, **kw):
    return make_two_view_problems(batch, n, generator=torch.Generator().manual_seed(seed), **kw)


def test_noise_free_triangulation_is_exact():
    p = _problems(3, 100)
    X = triangulate(p.x1, p.x2, p.K, p.R, p.t)
    rel = (X - p.points1).norm(dim=-1) / p.points1.norm(dim=-1)
    assert rel.max() < 1e-8


def test_triangulation_info_parallax_and_cheirality():
    p = _problems(2, 50, seed=1)
    tri = triangulate_with_info(p.x1, p.x2, p.K, p.R, p.t)
    assert tri.in_front.all()
    # Parallax is the angle between the ray to the point from each camera centre.
    centre2 = -(p.R.transpose(1, 2) @ p.t.unsqueeze(-1)).squeeze(-1)
    r1 = torch.nn.functional.normalize(p.points1, dim=-1)
    r2 = torch.nn.functional.normalize(p.points1 - centre2[:, None], dim=-1)
    expected = torch.rad2deg(torch.acos((r1 * r2).sum(-1).clamp(-1, 1)))
    assert torch.allclose(tri.parallax_deg, expected, atol=1e-6)
    assert torch.allclose(tri.depth2, p.points2[..., 2], rtol=1e-8)
    # The reversed translation puts every point behind the cameras.
    assert not triangulate_with_info(p.x1, p.x2, p.K, p.R, -p.t).in_front.any()


def test_zero_translation_is_finite_and_flagged():
    p = _problems(1, 20, seed=2, pure_rotation=True)
    tri = triangulate_with_info(p.x1, p.x2, p.K, p.R, p.t)
    assert torch.isfinite(tri.points).all() and not tri.in_front.any()


def test_triangulation_is_differentiable():
    p = _problems(1, 6, seed=3)
    x2 = p.x2.clone().requires_grad_(True)
    t = p.t.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: triangulate(p.x1, a, p.K, p.R, b), (x2, t))


def test_scale_recovery_from_depth_samples_and_map():
    p = _problems(2, 200, seed=4, noise_px=0.3)
    t_unit = p.t / p.t.norm(dim=-1, keepdim=True)
    true_scale = p.t.norm(dim=-1)
    depth = p.depth1.clone()
    depth[:, :30] *= 3.0  # 15 % grossly wrong depths must not move the median
    scale, valid = recover_translation_scale(p.x1, p.x2, p.K, p.R, t_unit, depth_at_x1=depth)
    assert valid.all()
    assert ((scale - true_scale).abs() / true_scale).max() < 0.02

    # The same through a (B, 1, H, W) depth map holding each point's depth at its nearest pixel (noise-free pixels).
    q = _problems(2, 100, seed=5)
    W, H = q.image_size
    depth_map = torch.zeros(2, 1, H, W, dtype=torch.float64)
    col, row = q.x1[..., 0].round().long(), q.x1[..., 1].round().long()
    for b in range(2):
        depth_map[b, 0, row[b], col[b]] = q.depth1[b]
    x1_on_grid = torch.stack([col, row], dim=-1).double()
    # Move x2 to stay consistent with the rounded x1 (re-project the point seen at the rounded pixel).
    X1 = torch.cat([x1_on_grid, torch.ones_like(x1_on_grid[..., :1])], -1) @ torch.linalg.inv(q.K).transpose(1, 2)
    X1 = X1 * q.depth1.unsqueeze(-1)
    x2, _, _ = project_points(X1 @ q.R.transpose(1, 2) + q.t[:, None], q.K)
    scale, valid = recover_translation_scale(x1_on_grid, x2, q.K, q.R, 5.0 * q.t, depth1=depth_map)
    assert valid.all()
    assert torch.allclose(scale, torch.full_like(scale, 0.2), rtol=1e-6)


def test_scale_recovery_invalid_with_too_few_points_or_zero_translation():
    p = _problems(2, 20, seed=6)
    w = torch.zeros(2, 20, dtype=torch.float64)
    w[0, :3] = 1
    w[1] = 1
    scale, valid = recover_translation_scale(p.x1, p.x2, p.K, p.R, p.t, depth_at_x1=p.depth1, weights=w)
    assert valid.tolist() == [False, True] and scale[0] == 1.0
    scale, valid = recover_translation_scale(p.x1, p.x2, p.K, p.R, torch.zeros_like(p.t), depth_at_x1=p.depth1)
    assert not valid.any() and torch.isfinite(scale).all()


def test_wrong_shapes_raise():
    p = _problems(1, 10)
    with pytest.raises(ValueError, match="t"):
        triangulate(p.x1, p.x2, p.K, p.R, p.t[0])
    with pytest.raises(ValueError, match="x2"):
        triangulate(p.x1, p.x2[:, :5], p.K, p.R, p.t)
    with pytest.raises(ValueError, match="exactly one"):
        recover_translation_scale(p.x1, p.x2, p.K, p.R, p.t)
    with pytest.raises(ValueError, match="depth_at_x1"):
        recover_translation_scale(p.x1, p.x2, p.K, p.R, p.t, depth_at_x1=p.depth1[:, :5])


@pytest.mark.parametrize("kw", [{}, {"planar": True}, {"pure_rotation": True}, {"baseline_ratio": 1e-3}])
def test_synthetic_problems_are_consistent(kw):
    p = _problems(3, 80, seed=7, **kw)
    W, H = p.image_size
    x1, z1, front1 = project_points(p.points1, p.K)
    x2, z2, front2 = project_points(p.points2, p.K)
    assert front1.all() and front2.all()
    assert torch.allclose(x1, p.x1) and torch.allclose(x2, p.x2)
    for x in (x1, x2):
        assert (x[..., 0] >= 0).all() and (x[..., 0] <= W - 1).all() and (x[..., 1] <= H - 1).all()
    assert torch.allclose(p.R @ p.R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(3, 3, 3))
    if kw.get("pure_rotation"):
        assert (p.t == 0).all()
    if "baseline_ratio" in kw:
        centre2 = -(p.R.transpose(1, 2) @ p.t.unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(centre2.norm(dim=-1), torch.full((3,), 6e-3, dtype=torch.float64))
    if kw.get("planar"):
        centred = p.points1 - p.points1.mean(1, keepdim=True)
        assert (torch.linalg.svdvals(centred)[:, 2] < 1e-9).all()


def test_synthetic_noise_outliers_dtype_and_seed():
    p = _problems(2, 100, seed=8, noise_px=1.0, outlier_ratio=0.25)
    q = _problems(2, 100, seed=8, noise_px=1.0, outlier_ratio=0.25, dtype=torch.float32)
    assert q.x1.dtype == torch.float32 and q.inliers.dtype == torch.bool
    assert torch.allclose(q.x1.double(), p.x1, atol=1e-3) and torch.equal(q.inliers, p.inliers)
    assert (p.inliers.sum(-1) == 75).all()
    clean, _, _ = project_points(p.points2, p.K)
    err = (clean - p.x2).norm(dim=-1)
    assert 0.8 < err[p.inliers].pow(2).mean().div(2).sqrt() < 1.2  # per-coordinate std of the noise
    assert err[~p.inliers].median() > 20
    with pytest.raises(ValueError, match="outlier_ratio"):
        make_two_view_problems(1, 10, outlier_ratio=1.0)
