"""View synthesis: warp a source image into the target view from the target's depth and the relative pose."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .camera import backproject_depth, project_points
from .validation import check_same_device_dtype, check_shape

# Round-off in back-projection then projection moves border pixels by ~1e-5 px; they should stay valid.
BORDER_TOLERANCE_PX = 1e-3


def pixels_to_grid(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates -> ``grid_sample`` coordinates for ``align_corners=False``.

    With pixel centres at integers, the left edge of pixel 0 is x = -0.5, which ``align_corners=False`` calls -1.

    Args:
        pixels: (..., 2) pixel coordinates ``(x, y)``.
        height, width: size of the image that will be sampled.

    Returns:
        (..., 2) normalised coordinates in [-1, 1] for points inside the image.
    """
    scale = pixels.new_tensor([2.0 / width, 2.0 / height])
    return (pixels + 0.5) * scale - 1.0


def reproject_pixels(depth_target: torch.Tensor, T_source_target: torch.Tensor, K_target: torch.Tensor,
                     K_source: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each target pixel lands in the source image.

    Args:
        depth_target: (B, 1, H, W) target depth (camera z), 0 or negative where unknown.
        T_source_target: (B, 4, 4) maps target-frame points into the source frame.
        K_target: (B, 3, 3) target intrinsics.
        K_source: (B, 3, 3) source intrinsics; defaults to ``K_target``.

    Returns:
        pixels_source: (B, H, W, 2) source pixel coordinates ``(x, y)`` of every target pixel.
        in_front: (B, 1, H, W) bool, the target depth is positive and the point lies in front of the source camera.
    """
    dims = check_shape(depth_target, "depth_target", ("B", 1, "H", "W"))
    check_shape(T_source_target, "T_source_target", ("B", 4, 4), dims)
    check_shape(K_target, "K_target", ("B", 3, 3), dims)
    K_source = K_target if K_source is None else K_source
    check_shape(K_source, "K_source", ("B", 3, 3), dims)
    check_same_device_dtype(("depth_target", depth_target), ("T_source_target", T_source_target),
                            ("K_target", K_target), ("K_source", K_source))
    B, _, H, W = depth_target.shape

    points_target = backproject_depth(depth_target, K_target).reshape(B, 3, H * W)  # (B, 3, HW)
    R, t = T_source_target[:, :3, :3], T_source_target[:, :3, 3:]
    points_source = (R @ points_target + t).transpose(1, 2)  # (B, HW, 3)
    pixels, _, in_front = project_points(points_source, K_source)  # (B, HW, 2), (B, HW)
    in_front = in_front & (depth_target.reshape(B, H * W) > 0)
    return pixels.reshape(B, H, W, 2), in_front.reshape(B, 1, H, W)


def warp_image(source: torch.Tensor, depth_target: torch.Tensor, T_source_target: torch.Tensor, K: torch.Tensor,
               K_source: torch.Tensor | None = None, padding_mode: str = "border",
               mode: str = "bilinear") -> tuple[torch.Tensor, torch.Tensor]:
    """Synthesise the target view by sampling the source image where the target's 3D points project.

    Args:
        source: (B, C, H_s, W_s) source image (any channels, e.g. RGB or features).
        depth_target: (B, 1, H, W) target depth, metres or the network's scale, consistent with the translation.
        T_source_target: (B, 4, 4) maps target-frame points into the source frame.
        K: (B, 3, 3) target intrinsics (at the target's resolution).
        K_source: (B, 3, 3) source intrinsics at the source's resolution; defaults to ``K``.
        padding_mode: ``grid_sample`` padding; ``"border"`` (MonoDepth2) keeps gradients at the edges, invalid pixels
            are reported in the mask either way.
        mode: ``grid_sample`` interpolation.

    Returns:
        warped: (B, C, H, W) the source resampled into the target view.
        valid: (B, 1, H, W) bool; False where the point is behind either camera, the depth is not positive, or it
            projects outside the source image (beyond the outer pixel centres).

    Example:
        >>> B, H, W = 1, 4, 6
        >>> K = torch.tensor([[[10.0, 0, 2.5], [0, 10.0, 1.5], [0, 0, 1]]])
        >>> img = torch.rand(B, 3, H, W)
        >>> warped, valid = warp_image(img, torch.ones(B, 1, H, W), torch.eye(4)[None], K)
        >>> torch.allclose(warped, img, atol=1e-6), bool(valid.all())
        (True, True)
    """
    dims = check_shape(source, "source", ("B", "C", "Hs", "Ws"))
    check_shape(depth_target, "depth_target", ("B", 1, "H", "W"), dims)
    check_same_device_dtype(("source", source), ("depth_target", depth_target))
    H_s, W_s = source.shape[-2:]
    pixels, in_front = reproject_pixels(depth_target, T_source_target, K, K_source)  # (B, H, W, 2)
    grid = pixels_to_grid(pixels, H_s, W_s)
    warped = F.grid_sample(source, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    x, y = pixels[..., 0], pixels[..., 1]
    tol = BORDER_TOLERANCE_PX
    inside = (x >= -tol) & (x <= W_s - 1 + tol) & (y >= -tol) & (y <= H_s - 1 + tol)  # (B, H, W)
    return warped, in_front & inside.unsqueeze(1)
