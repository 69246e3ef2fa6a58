"""The essential-anchored pose sources (``priordepth``, ``priordepth_posenet_t``) on cached essential solves."""

from __future__ import annotations

import pytest
import torch

from priordepth_core.geometry.camera import project_points, unproject_points
from priordepth_core.geometry.se3 import make_transform
from priordepth_core.pose import EssentialStatus, PoseProblem, PoseSourceSettings, build_pose_source

H, W = 48, 64


def _problem(status: list[int], depth_scale: float = 1.0, seed: int = 0):
    """Two pairs seen by a camera moving 0.5 m; matches from the true depth, cached pose with a unit direction."""
    generator = torch.Generator().manual_seed(seed)
    B, N = len(status), 40
    K = torch.tensor([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]], dtype=torch.float64).expand(B, 3, 3)
    depth = 2.0 + 3.0 * torch.rand(B, 1, H, W, generator=generator, dtype=torch.float64)
    x_target = torch.stack([torch.randint(2, W - 2, (B, N), generator=generator),
                            torch.randint(2, H - 2, (B, N), generator=generator)], dim=-1).double()
    angle = torch.tensor(0.05, dtype=torch.float64)
    R = torch.tensor([[torch.cos(angle), 0, torch.sin(angle)], [0, 1, 0], [-torch.sin(angle), 0, torch.cos(angle)]],
                     dtype=torch.float64).expand(B, 3, 3)
    t = torch.tensor([0.3, 0.0, 0.4], dtype=torch.float64).expand(B, 3)  # |t| = 0.5
    at_pixels = torch.stack([d[0, x[:, 1].long(), x[:, 0].long()] for d, x in zip(depth, x_target)])
    points = unproject_points(x_target, at_pixels, K)
    x_context, _, _ = project_points(points @ R.transpose(1, 2) + t[:, None], K)
    T_unit = make_transform(R, t / t.norm(dim=-1, keepdim=True))
    triangulated = points[..., 2] / 0.5  # the depth a unit baseline triangulates
    problem = PoseProblem(K=K, x_target=x_target, x_context=x_context, weights=torch.ones(B, N, dtype=torch.float64),
                          depth_target=depth * depth_scale, essential_T_context_target=T_unit,
                          essential_status=torch.tensor(status), triangulated_depth_target=triangulated)
    return problem, make_transform(R, t)


def test_priordepth_scale_follows_the_depth_scale_and_nothing_else():
    settings = PoseSourceSettings(min_inliers=8)
    source = build_pose_source("priordepth", settings)
    for depth_scale in (1.0, 3.0):
        problem, truth = _problem([EssentialStatus.OK, EssentialStatus.LOW_PARALLAX], depth_scale)
        result = source.solve(problem)
        assert result.valid.all() and result.supported.all()
        torch.testing.assert_close(result.T_context_target[:, :3, :3], truth[:, :3, :3])
        torch.testing.assert_close(result.T_context_target[:, :3, 3], truth[:, :3, 3] * depth_scale, atol=1e-6,
                                   rtol=1e-6)
        assert result.depth_gradient.tolist() == [True, False]  # low parallax: the pair does not train depth


def test_priordepth_pose_does_not_follow_a_flat_depth():
    problem, truth = _problem([EssentialStatus.OK, EssentialStatus.OK])
    problem.depth_target = torch.full_like(problem.depth_target, 3.0)
    result = build_pose_source("priordepth", PoseSourceSettings()).solve(problem)
    # Direction and rotation stay the cached ones; only the length changes with the depth.
    direction = result.T_context_target[:, :3, 3] / result.T_context_target[:, :3, 3].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(direction, truth[:, :3, 3] / 0.5)


def test_rotation_only_and_failed_pairs():
    problem, truth = _problem([EssentialStatus.ROTATION_ONLY, EssentialStatus.FAILED])
    result = build_pose_source("priordepth", PoseSourceSettings()).solve(problem)
    assert result.valid.tolist() == [True, False] and result.pure_rotation.tolist() == [True, False]
    assert result.depth_gradient.tolist() == [False, False]
    torch.testing.assert_close(result.T_context_target[0, :3, 3], torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(result.supported_pose()[1], torch.eye(4, dtype=torch.float64))


def test_too_few_triangulated_points_is_invalid():
    problem, _ = _problem([EssentialStatus.OK, EssentialStatus.OK])
    problem.weights[1, 3:] = 0
    result = build_pose_source("priordepth", PoseSourceSettings()).solve(problem)
    assert result.valid.tolist() == [True, False]


def test_posenet_translation_variant_keeps_the_cached_rotation():
    problem, truth = _problem([EssentialStatus.OK, EssentialStatus.FAILED])
    posenet = make_transform(torch.eye(3, dtype=torch.float64).expand(2, 3, 3),
                             torch.tensor([[0.1, 0.2, 0.3]] * 2, dtype=torch.float64))
    problem.posenet_T_context_target = posenet
    result = build_pose_source("priordepth_posenet_t", PoseSourceSettings()).solve(problem)
    torch.testing.assert_close(result.T_context_target[0, :3, :3], truth[0, :3, :3])
    torch.testing.assert_close(result.T_context_target[1], posenet[1])  # failed solve: the PoseNet's whole pose
    torch.testing.assert_close(result.T_context_target[:, :3, 3], posenet[:, :3, 3])


def test_missing_cache_inputs_are_named():
    problem, _ = _problem([EssentialStatus.OK])
    problem.essential_status = None
    with pytest.raises(ValueError, match="essential_status"):
        build_pose_source("priordepth", PoseSourceSettings()).solve(problem)


def test_the_length_carries_the_depth_gradient_unless_detached():
    for detach, expected in ((False, True), (True, False)):
        problem, _ = _problem([EssentialStatus.OK, EssentialStatus.OK])
        problem.depth_target.requires_grad_(True)
        result = build_pose_source("priordepth", PoseSourceSettings(detach_depth=detach)).solve(problem)
        if expected:
            result.T_context_target[:, :3, 3].norm(dim=-1).sum().backward()
            # Only the weighted median's point per pair receives it (one pixel neighbourhood each).
            assert problem.depth_target.grad is not None and 0 < int((problem.depth_target.grad != 0).sum()) <= 8
        else:
            assert not result.T_context_target.requires_grad
