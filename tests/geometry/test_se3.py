import math

import kornia
import numpy as np
import pytest
import torch

from priordepth_core.geometry.se3 import (
    compose,
    invert_transform,
    invert_transform_np,
    make_transform,
    pose_vector_to_transform,
    quaternion_xyzw_from_rotation,
    quaternion_xyzw_from_rotation_np,
    random_rotation,
    rotation_angle,
    rotation_error_deg,
    rotation_from_quaternion_xyzw_np,
    se3_exp,
    se3_log,
    se3_log_np,
    skew,
    skew_np,
    so3_exp,
    so3_log,
    so3_log_np,
    translation_direction_error_deg,
    vee,
)


def _axis_angles(n, dtype, max_angle=math.pi * 0.999, seed=0):
    g = torch.Generator().manual_seed(seed)
    axis = torch.randn(n, 3, generator=g, dtype=dtype)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    return axis * torch.rand(n, 1, generator=g, dtype=dtype) * max_angle


def test_golden_values():
    R = so3_exp(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    expected = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    assert torch.allclose(R, expected, atol=1e-15)
    assert rotation_angle(R).item() == pytest.approx(math.pi / 2, abs=1e-15)


def test_so3_matches_kornia_and_round_trips():
    w = _axis_angles(200, torch.float64)
    R = so3_exp(w)
    assert torch.allclose(R, kornia.geometry.conversions.axis_angle_to_rotation_matrix(w), atol=1e-12)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(200, 3, 3), atol=1e-12)
    assert torch.allclose(so3_log(R), w, atol=1e-10)


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-7, 1e-3, math.pi - 1e-3, math.pi - 1e-7, math.pi])
def test_so3_log_at_singular_angles(angle):
    axis = torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64)
    w = axis * angle
    w_back = so3_log(so3_exp(w))
    if angle == math.pi:  # +axis*pi and -axis*pi are the same rotation
        assert torch.allclose(so3_exp(w_back), so3_exp(w), atol=1e-12)
    else:
        assert torch.allclose(w_back, w, atol=1e-9)


def test_gradients_finite_at_zero():
    w = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    so3_exp(w).sum().backward()
    assert torch.isfinite(w.grad).all()
    xi = torch.zeros(2, 6, dtype=torch.float64, requires_grad=True)
    se3_log(se3_exp(xi)).sum().backward()
    assert torch.isfinite(xi.grad).all()
    R = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1).requires_grad_(True)
    so3_log(R).sum().backward()
    assert torch.isfinite(R.grad).all()


def test_gradcheck_exp_and_log():
    w = _axis_angles(4, torch.float64, max_angle=2.5).requires_grad_(True)
    assert torch.autograd.gradcheck(so3_exp, (w,))
    xi = torch.cat([torch.randn(4, 3, dtype=torch.float64), _axis_angles(4, torch.float64, 2.5, seed=1)], -1)
    xi.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: se3_log(se3_exp(x)), (xi,))


def test_se3_round_trip_and_inverse(dtype):
    xi = torch.cat([torch.randn(50, 3, dtype=dtype), _axis_angles(50, dtype, max_angle=3.0)], -1)
    xi[0, 3:] = 0
    T = se3_exp(xi)
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    assert torch.allclose(se3_log(T), xi, atol=tol)
    eye = torch.eye(4, dtype=dtype).expand(50, 4, 4)
    assert torch.allclose(compose(invert_transform(T), T), eye, atol=tol)
    assert torch.allclose(torch.linalg.inv(T), invert_transform(T), atol=tol)


def test_skew_vee():
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose((skew(a) @ b.unsqueeze(-1)).squeeze(-1), torch.linalg.cross(a, b))
    assert torch.allclose(vee(skew(a)), a)


def test_errors():
    R1 = random_rotation(10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    R_delta = so3_exp(torch.tensor([0.0, 0.0, math.radians(2.0)], dtype=torch.float64)).expand(10, 3, 3)
    assert torch.allclose(rotation_error_deg(R1 @ R_delta, R1), torch.full((10,), 2.0, dtype=torch.float64))
    t = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]], dtype=torch.float64)
    t2 = torch.tensor([[2.0, 0, 0], [0.0, 1, 0], [-1.0, 0, 0]], dtype=torch.float64)
    assert torch.allclose(translation_direction_error_deg(t, t2), torch.tensor([0.0, 90.0, 180.0], dtype=torch.float64))


def test_pose_vector_to_transform():
    T = pose_vector_to_transform(torch.zeros(1, 3), torch.tensor([[1.0, 2.0, 3.0]]))
    assert torch.allclose(T, make_transform(torch.eye(3)[None], torch.tensor([[1.0, 2.0, 3.0]])))
    with pytest.raises(ValueError, match="translation"):
        pose_vector_to_transform(torch.zeros(1, 3), torch.zeros(2, 3))


def test_nearest_rotation_matches_svd_polar_factor():
    from priordepth_core.geometry.se3 import nearest_rotation

    g = torch.Generator().manual_seed(5)
    M = torch.randn(500, 3, 3, generator=g, dtype=torch.float64)
    M = M * torch.sign(torch.det(M))[:, None, None]
    U, S, Vh = torch.linalg.svd(M)
    well_conditioned = S[:, 0] / S[:, 2] < 1e3
    assert torch.allclose(nearest_rotation(M)[well_conditioned], (U @ Vh)[well_conditioned], atol=1e-12)
    R = random_rotation(4, generator=g, dtype=torch.float64)
    assert torch.allclose(nearest_rotation(3.0 * R), R, atol=1e-14)
    with pytest.raises(ValueError, match="M must have shape"):
        nearest_rotation(torch.eye(4))


def test_quaternion_xyzw_matches_scipy_in_every_branch():
    """Agrees with scipy (scalar-last, w >= 0), including near 180 degrees where each branch of Shepperd's method is
    taken, batched and unbatched, and the inverse conversion recovers the rotation."""
    from scipy.spatial.transform import Rotation

    rotations = [*Rotation.random(200, random_state=3), *(Rotation.from_rotvec(np.pi * np.array(axis)) for axis in
                 ([1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.6, 0.8, 0]))]
    matrices = np.stack([r.as_matrix() for r in rotations])
    got = quaternion_xyzw_from_rotation_np(matrices)
    for rotation, q in zip(rotations, got):
        expected = rotation.as_quat()
        expected = -expected if expected[3] < 0 else expected
        assert np.allclose(q, expected, atol=1e-12) or (abs(expected[3]) < 1e-12 and np.allclose(q, -expected))
    np.testing.assert_allclose(rotation_from_quaternion_xyzw_np(got), matrices, atol=1e-12)
    np.testing.assert_allclose(quaternion_xyzw_from_rotation_np(matrices[0]), got[0])
    # ROS order (x, y, z, w): 90 degrees about z; a quaternion is normalised before use.
    half = math.sqrt(0.5)
    np.testing.assert_allclose(rotation_from_quaternion_xyzw_np([0, 0, 2.0, 2.0]), [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
                               atol=1e-12)
    np.testing.assert_allclose(quaternion_xyzw_from_rotation_np(np.diag([-1.0, -1.0, 1.0])), [0, 0, 1, 0], atol=1e-15)
    assert quaternion_xyzw_from_rotation_np(np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]))[2] == pytest.approx(-half)
    with pytest.raises(ValueError, match="non-zero norm"):
        rotation_from_quaternion_xyzw_np([0, 0, 0, 0])


def test_quaternion_gradients_are_finite_at_half_turns():
    R = torch.stack([so3_exp(torch.tensor([math.pi, 0.0, 0.0], dtype=torch.float64)),
                     torch.eye(3, dtype=torch.float64)]).requires_grad_()
    quaternion_xyzw_from_rotation(R).sum().backward()
    assert torch.isfinite(R.grad).all()


def test_numpy_front_ends_match_the_torch_functions():
    T = se3_exp(torch.tensor([[0.3, -0.2, 1.0, 0.1, 0.5, -0.3], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64))
    np.testing.assert_allclose(invert_transform_np(T.numpy()) @ T.numpy(), np.broadcast_to(np.eye(4), (2, 4, 4)),
                               atol=1e-12)
    np.testing.assert_allclose(se3_log_np(T.numpy()), se3_log(T).numpy())
    np.testing.assert_allclose(so3_log_np(T.numpy()[:, :3, :3]), so3_log(T[:, :3, :3]).numpy())
    np.testing.assert_allclose(skew_np([1.0, 2.0, 3.0]) @ [4.0, 5.0, 6.0], np.cross([1.0, 2, 3], [4.0, 5, 6]))
