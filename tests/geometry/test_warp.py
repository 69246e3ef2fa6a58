import pytest
import torch

from priordepth_core.geometry.se3 import make_transform, so3_exp
from priordepth_core.geometry.warp import pixels_to_grid, reproject_pixels, warp_image


def _K(B=1, dtype=torch.float64):
    return torch.tensor([[40.0, 0, 23.5], [0, 40.0, 15.5], [0, 0, 1]], dtype=dtype).expand(B, 3, 3).clone()


def test_identity_warp_reproduces_source(dtype):
    img = torch.rand(2, 3, 32, 48, dtype=dtype)
    identity = torch.eye(4, dtype=dtype).expand(2, 4, 4)
    warped, valid = warp_image(img, torch.full((2, 1, 32, 48), 3.0, dtype=dtype), identity, _K(2, dtype))
    assert torch.allclose(warped, img, atol=1e-5)
    assert bool(valid.all())


def test_sideways_motion_shifts_by_disparity():
    # Source camera sits 0.1 m to the left of the target: X_source = X_target + (0.1, 0, 0) -> shift f*b/Z = 2 px.
    H, W = 32, 48
    img = torch.rand(1, 3, H, W, dtype=torch.float64)
    T = make_transform(torch.eye(3, dtype=torch.float64)[None], torch.tensor([[0.1, 0.0, 0.0]], dtype=torch.float64))
    warped, valid = warp_image(img, torch.full((1, 1, H, W), 2.0, dtype=torch.float64), T, _K())
    assert torch.allclose(warped[..., : W - 2], img[..., 2:], atol=1e-9)
    assert valid[..., : W - 2].all() and not valid[..., W - 2 :].any()


def test_behind_camera_and_zero_depth_are_invalid():
    H, W = 8, 12
    K = torch.tensor([[[10.0, 0, 5.5], [0, 10.0, 3.5], [0, 0, 1]]], dtype=torch.float64)
    depth = torch.full((1, 1, H, W), 2.0, dtype=torch.float64)
    depth[..., 0, 0] = 0.0
    half_turn = so3_exp(torch.tensor([[0.0, 3.14159, 0.0]], dtype=torch.float64))
    T = make_transform(half_turn, torch.zeros(1, 3, dtype=torch.float64))
    _, valid_turned = warp_image(torch.rand(1, 1, H, W, dtype=torch.float64), depth, T, K)
    assert not valid_turned.any()
    identity = torch.eye(4, dtype=torch.float64)[None]
    _, valid_id = warp_image(torch.rand(1, 1, H, W, dtype=torch.float64), depth, identity, K)
    assert not valid_id[0, 0, 0, 0] and valid_id.sum() == H * W - 1


def test_rotation_warp_matches_homography():
    # A pure rotation warps by H = K R K^-1 regardless of depth: compare with kornia's homography warp.
    import kornia

    H, W = 24, 32
    K = torch.tensor([[[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]]], dtype=torch.float64)
    R = so3_exp(torch.tensor([[0.02, -0.03, 0.01]], dtype=torch.float64))
    img = torch.rand(1, 3, H, W, dtype=torch.float64)
    depth = torch.rand(1, 1, H, W, dtype=torch.float64) + 1.0
    warped, valid = warp_image(img, depth, make_transform(R, torch.zeros(1, 3, dtype=torch.float64)), K)
    H_source_target = K @ R @ torch.linalg.inv(K)
    # kornia warps src into dst with dst(x) = src(M^-1 x); we need target(x) = source(H x).
    ref = kornia.geometry.transform.warp_perspective(img, torch.linalg.inv(H_source_target), (H, W), align_corners=True)
    assert torch.allclose(warped[valid.expand_as(warped)], ref[valid.expand_as(ref)], atol=1e-6)


def test_gradients_reach_depth_and_pose():
    H, W = 16, 20
    img = torch.rand(1, 3, H, W, dtype=torch.float64)
    depth = (torch.rand(1, 1, H, W, dtype=torch.float64) + 2).requires_grad_(True)
    xi = torch.tensor([[0.05, 0.0, 0.02]], dtype=torch.float64, requires_grad=True)
    T = make_transform(torch.eye(3, dtype=torch.float64)[None], xi)
    K = torch.tensor([[[20.0, 0, 9.5], [0, 20.0, 7.5], [0, 0, 1]]], dtype=torch.float64)
    warped, _ = warp_image(img, depth, T, K)
    warped.sum().backward()
    assert depth.grad.abs().sum() > 0 and xi.grad.abs().sum() > 0


def test_pixels_to_grid_convention():
    g = pixels_to_grid(torch.tensor([[-0.5, -0.5], [9.5, 4.5], [4.5, 2.0]]), height=5, width=10)
    assert torch.allclose(g, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))


def test_reproject_pixels_shapes_and_errors():
    px, in_front = reproject_pixels(torch.ones(2, 1, 4, 5), torch.eye(4).expand(2, 4, 4), _K(2, torch.float32))
    assert px.shape == (2, 4, 5, 2) and in_front.shape == (2, 1, 4, 5)
    with pytest.raises(ValueError, match="T_source_target"):
        reproject_pixels(torch.ones(2, 1, 4, 5), torch.eye(4).expand(3, 4, 4), _K(2, torch.float32))
    with pytest.raises(ValueError, match="dtype"):
        source64 = torch.rand(1, 3, 4, 5, dtype=torch.float64)
        warp_image(source64, torch.ones(1, 1, 4, 5), torch.eye(4)[None], _K(1, torch.float32))
