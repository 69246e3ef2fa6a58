"""Edge-aware disparity smoothness (MonoDepth2 ``get_smooth_loss`` on mean-normalised disparity)."""

from __future__ import annotations

import torch
from torch import nn

from ..geometry.validation import check_shape

# MonoDepth2 divides the disparity by its per-image mean plus this, so the loss does not shrink with the depth scale.
MEAN_NORMALISATION_EPS = 1e-7


def edge_aware_smoothness(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Mean absolute disparity gradient, down-weighted by ``exp(-|image gradient|)``, in x plus in y.

    Args:
        disp: (B, 1, H, W) disparity (already normalised if wanted).
        image: (B, C, H, W) image at the same resolution, in [0, 1].

    Returns:
        Scalar: ``mean(|d_x disp| e^{-|d_x I|}) + mean(|d_y disp| e^{-|d_y I|})``, the colour gradient averaged over
        channels.
    """
    dims = check_shape(disp, "disp", ("B", 1, "H", "W"))
    check_shape(image, "image", ("B", "C", "H", "W"), dims)
    grad_disp_x = (disp[:, :, :, :-1] - disp[:, :, :, 1:]).abs()
    grad_disp_y = (disp[:, :, :-1, :] - disp[:, :, 1:, :]).abs()
    grad_image_x = (image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(1, keepdim=True)
    grad_image_y = (image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(1, keepdim=True)
    return (grad_disp_x * torch.exp(-grad_image_x)).mean() + (grad_disp_y * torch.exp(-grad_image_y)).mean()


class SmoothnessLoss(nn.Module):
    """Weighted edge-aware smoothness of one scale's disparity, as MonoDepth2 adds it per scale.

    Args:
        weight: loss weight at scale 0 (MonoDepth2 ``disparity_smoothness``: 1e-3); scale ``s`` gets
            ``weight / 2**s``.
    """

    def __init__(self, weight: float = 1e-3):
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight must be non-negative, got {weight}")
        self.weight = weight

    def forward(self, disp: torch.Tensor, image: torch.Tensor,
                scale: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Smoothness term of one output scale.

        Args:
            disp: (B, 1, h, w) the network's disparity at this scale (not upsampled, as MonoDepth2).
            image: (B, 3, h, w) the target image resized to the same resolution.
            scale: the output scale index ``s`` (resolution ``1 / 2**s`` of the input).

        Returns:
            loss: scalar, ``weight / 2**scale * edge_aware_smoothness(disp / mean(disp), image)``.
            metrics: ``smoothness/raw_scale{s}``: the unweighted term.
        """
        check_shape(disp, "disp", ("B", 1, "H", "W"))
        if scale < 0:
            raise ValueError(f"scale must be non-negative, got {scale}")
        work_dtype = torch.promote_types(disp.dtype, torch.float32)
        disp = disp.to(work_dtype)
        mean_disp = disp.mean(dim=(2, 3), keepdim=True)
        raw = edge_aware_smoothness(disp / (mean_disp + MEAN_NORMALISATION_EPS), image.to(work_dtype))
        loss = self.weight / 2**scale * raw
        return loss, {f"smoothness/raw_scale{scale}": raw.detach()}
