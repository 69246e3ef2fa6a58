import numpy as np
import pytest
import torch

from priordepth_core.geometry.camera import (
    backproject_depth,
    invert_intrinsics,
    pixel_grid,
    project_points,
    resize_intrinsics,
    resize_intrinsics_np,
    scale_intrinsics,
    transform_points,
    unproject_points,
)


def _K(B, dtype, device):
    K = torch.tensor([[520.0, 0.5, 318.2], [0.0, 515.0, 241.7], [0.0, 0.0, 1.0]], dtype=dtype, device=device)
    return K.expand(B, 3, 3).clone()


def test_invert_intrinsics_matches_linalg(dtype, device):
    K = _K(3, dtype, device)
    eye = torch.eye(3, dtype=dtype, device=device)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(invert_intrinsics(K) @ K, eye.expand(3, 3, 3), atol=tol)
    assert torch.allclose(invert_intrinsics(K), torch.linalg.inv(K), atol=tol)


def test_scale_intrinsics_maps_pixel_edges():
    # Resizing 640 -> 320 pixels: the left image edge (-0.5) and right edge (639.5) map to -0.5 and 319.5.
    K = torch.tensor([[500.0, 0, 0.0], [0, 500.0, 0.0], [0, 0, 1]])
    K[0, 2] = -0.5
    K[1, 2] = 479.5
    K2 = resize_intrinsics(K, (480, 640), (240, 320))
    np.testing.assert_allclose(resize_intrinsics_np(K.numpy(), (480, 640), (240, 320)), K2.numpy())
    assert K2[0, 2].item() == pytest.approx(-0.5)
    assert K2[1, 2].item() == pytest.approx(239.5)
    assert K2[0, 0].item() == pytest.approx(250.0)
    # A 3D point projects to consistent pixel positions before and after resizing.
    X = torch.tensor([[[0.3, -0.2, 2.0]]])
    px1, _, _ = project_points(X, K[None])
    px2, _, _ = project_points(X, K2[None])
    assert torch.allclose((px1 + 0.5) * 0.5 - 0.5, px2, atol=1e-5)


def test_scale_intrinsics_rejects_bad_shape():
    with pytest.raises(ValueError, match="K must have shape"):
        scale_intrinsics(torch.eye(4), 0.5, 0.5)


def test_backproject_project_round_trip(dtype, device):
    B, H, W = 2, 6, 9
    K = _K(B, dtype, device)
    depth = torch.rand(B, 1, H, W, dtype=dtype, device=device) * 10 + 0.5
    points = backproject_depth(depth, K)
    assert points.shape == (B, 3, H, W)
    assert torch.allclose(points[:, 2:], depth)
    pixels, z, in_front = project_points(points.flatten(2).transpose(1, 2), K)
    grid = pixel_grid(H, W, dtype=dtype, device=device).reshape(1, -1, 2)
    tol = 1e-9 if dtype == torch.float64 else 1e-3
    assert torch.allclose(pixels, grid.expand_as(pixels), atol=tol)
    assert bool(in_front.all())


def test_unproject_matches_backproject():
    B, H, W = 1, 4, 5
    K = _K(B, torch.float64, "cpu")
    depth = torch.rand(B, 1, H, W, dtype=torch.float64) + 1
    grid = pixel_grid(H, W, dtype=torch.float64).reshape(1, -1, 2)
    pts = unproject_points(grid, depth.reshape(1, -1), K)
    assert torch.allclose(pts, backproject_depth(depth, K).flatten(2).transpose(1, 2))


def test_project_behind_camera_is_flagged_and_finite():
    K = _K(1, torch.float64, "cpu")
    X = torch.tensor([[[0.1, 0.2, -1.0], [0.1, 0.2, 0.0], [0.1, 0.2, 1.0]]], dtype=torch.float64, requires_grad=True)
    pixels, z, in_front = project_points(X, K)
    assert in_front.tolist() == [[False, False, True]]
    pixels.sum().backward()
    assert torch.isfinite(pixels).all() and torch.isfinite(X.grad).all()


def test_transform_points():
    T = torch.eye(4, dtype=torch.float64)[None].clone()
    T[0, :3, 3] = torch.tensor([1.0, 2.0, 3.0])
    X = torch.zeros(1, 2, 3, dtype=torch.float64)
    assert torch.allclose(transform_points(T, X), torch.tensor([[[1.0, 2, 3], [1.0, 2, 3]]], dtype=torch.float64))


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="depth"):
        backproject_depth(torch.ones(2, 4, 4), _K(2, torch.float32, "cpu"))
    with pytest.raises(ValueError, match="K has B=1"):
        backproject_depth(torch.ones(2, 1, 4, 4), _K(1, torch.float32, "cpu"))
    with pytest.raises(ValueError, match="floating-point"):
        project_points(torch.ones(1, 3, 3, dtype=torch.int64), _K(1, torch.float32, "cpu"))
