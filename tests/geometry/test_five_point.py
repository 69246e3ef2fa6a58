"""Minimal 5-point solver: exact on noise-free problems, essential outputs on random ones, flags on degenerate sets."""

from __future__ import annotations

import torch

from priordepth_core.geometry.camera import invert_intrinsics
from priordepth_core.geometry.pose import make_two_view_problems
from priordepth_core.geometry.pose.essential import _essential_candidates
from priordepth_core.geometry.pose.five_point import MAX_SOLUTIONS, solve_five_point
from priordepth_core.geometry.se3 import rotation_error_deg, translation_direction_error_deg


def _normalised(p):
    ones = torch.ones_like(p.x1[..., :1])
    K_inv = invert_intrinsics(p.K)
    return torch.cat([p.x1, ones], -1) @ K_inv.mT, torch.cat([p.x2, ones], -1) @ K_inv.mT


def _best_pose_errors(E, valid, p):
    """(B,) smallest rotation and translation-direction errors over the valid solutions and their four poses."""
    R_a, R_b, t = _essential_candidates(E)  # (B, 10, 3, 3), (B, 10, 3)
    R_true, t_true = p.R[:, None].expand_as(R_a), p.t[:, None].expand_as(t)
    rot = torch.minimum(rotation_error_deg(R_a, R_true), rotation_error_deg(R_b, R_true))
    tdir = torch.minimum(translation_direction_error_deg(t, t_true), translation_direction_error_deg(-t, t_true))
    inf = torch.full_like(rot, float("inf"))
    return torch.where(valid, rot, inf).min(-1).values, torch.where(valid, tdir, inf).min(-1).values


def test_noise_free_problems_are_solved_exactly():
    p = make_two_view_problems(256, 5, generator=torch.Generator().manual_seed(0))
    E, valid = solve_five_point(*_normalised(p))
    assert E.shape == (256, MAX_SOLUTIONS, 3, 3) and valid.shape == (256, MAX_SOLUTIONS)
    assert valid.any(-1).all()
    rot, tdir = _best_pose_errors(E, valid, p)
    assert rot.max() < 1e-6 and tdir.max() < 1e-6


def test_batched_over_problems_and_hypotheses_matches_one_by_one():
    p = make_two_view_problems(6, 5, generator=torch.Generator().manual_seed(1))
    n1, n2 = _normalised(p)
    E, valid = solve_five_point(n1.view(2, 3, 5, 3), n2.view(2, 3, 5, 3))
    E_single, valid_single = solve_five_point(n1[4], n2[4])
    assert E.shape == (2, 3, MAX_SOLUTIONS, 3, 3)
    assert torch.equal(valid[1, 1], valid_single)
    assert torch.allclose(E[1, 1], E_single, atol=1e-12)


def test_random_problems_give_essential_matrices_through_the_points():
    g = torch.Generator().manual_seed(2)
    p1 = torch.cat([torch.randn(512, 5, 2, generator=g, dtype=torch.float64), torch.ones(512, 5, 1)], -1)
    p2 = torch.cat([torch.randn(512, 5, 2, generator=g, dtype=torch.float64), torch.ones(512, 5, 1)], -1)
    E, valid = solve_five_point(p1, p2)
    counts = valid.sum(-1)
    assert (counts % 2 == 0).float().mean() > 0.99  # real roots of a degree-10 polynomial come in an even number
    assert counts.float().mean() > 2.0
    singular = torch.linalg.svdvals(E[valid])
    assert (singular[:, 0] - singular[:, 1]).abs().max() < 1e-6 and singular[:, 2].max() < 1e-6
    residual = torch.einsum("bni,bsij,bnj->bsn", p2, E, p1)  # invalid slots are zero
    assert residual[valid].abs().max() < 1e-8


def test_degenerate_and_non_finite_sets_are_flagged_without_exception():
    p = make_two_view_problems(3, 5, generator=torch.Generator().manual_seed(3))
    n1, n2 = _normalised(p)
    n1[0], n2[0] = n1[0, :1].expand(5, 3), n2[0, :1].expand(5, 3)  # one point repeated five times
    n1[1, 2, 0] = float("nan")
    E, valid = solve_five_point(n1, n2)
    assert not valid[0].any() and not valid[1].any() and valid[2].any()
    assert torch.isfinite(E).all()
