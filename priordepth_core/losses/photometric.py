"""MonoDepth2's photometric reprojection loss: SSIM + L1, per-pixel minimum over sources, auto-masking.

Differences from MonoDepth2's ``trainer.compute_losses`` (which it otherwise follows number for number):

- an explicit validity mask per warped source: a pixel that projects outside a source (or behind it) cannot win the
  minimum for that source, and a pixel valid in no source is left out of the mean (MonoDepth2 relies on border
  padding instead);
- ``pair_valid`` removes a whole source frame (warped and identity terms) when its pose solve failed;
- the loss is averaged over included pixels rather than all pixels, so excluded pixels do not dilute it. With every
  pixel valid it is MonoDepth2's ``to_optimise.mean()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry.validation import check_shape

# MonoDepth2 layers.SSIM constants for images in [0, 1].
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
# MonoDepth2 adds Gaussian noise of this standard deviation to the identity loss to break ties with static pixels.
IDENTITY_TIE_BREAK_STD = 1e-5


def ssim_dissimilarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``(1 - SSIM) / 2`` over 3x3 windows with reflection padding, as MonoDepth2's ``layers.SSIM``.

    The window is a uniform 3x3 box. kornia's ``metrics.ssim(x, y, 3)`` weights the window with a Gaussian
    (``sigma=1.5``) and pads differently; measured against this function its ``(1 - SSIM) / 2`` differs by up to
    0.005 on an image and a slightly perturbed copy and 0.076 on two random images (float64, 16x20), so the
    MonoDepth2 box version is written here (five ``avg_pool2d`` calls).

    Args:
        x, y: (B, C, H, W) images in [0, 1], H and W at least 2.

    Returns:
        (B, C, H, W) dissimilarity in [0, 1]; 0 where the images agree.
    """
    dims = check_shape(x, "x", ("B", "C", "H", "W"))
    check_shape(y, "y", ("B", "C", "H", "W"), dims)
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(x, 3, 1)
    mu_y = F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    denominator = (mu_x**2 + mu_y**2 + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return torch.clamp((1 - numerator / denominator) / 2, 0, 1)


def reprojection_error(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """MonoDepth2's ``compute_reprojection_loss``: ``alpha * SSIM-dissimilarity + (1 - alpha) * L1``, channel mean.

    Args:
        pred: (B, 3, H, W) synthesised (or unwarped) image.
        target: (B, 3, H, W) target image.
        alpha: SSIM weight.

    Returns:
        (B, 1, H, W) per-pixel photometric error.
    """
    dims = check_shape(pred, "pred", ("B", "C", "H", "W"))
    check_shape(target, "target", ("B", "C", "H", "W"), dims)
    l1 = (target - pred).abs().mean(1, keepdim=True)
    ssim = ssim_dissimilarity(pred, target).mean(1, keepdim=True)
    return alpha * ssim + (1 - alpha) * l1


def _as_scale_list(value, name: str) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Sequence) and len(value) > 0 and all(isinstance(v, torch.Tensor) for v in value):
        return list(value)
    raise ValueError(f"{name} must be a tensor or a non-empty list of tensors (one per scale)")


class PhotometricLoss(nn.Module):
    """Minimum-reprojection photometric loss with auto-masking and validity masks, averaged over scales.

    Args:
        alpha: SSIM weight in the per-pixel error (MonoDepth2: 0.85).
        automask: MonoDepth2's auto-masking: the identity error of the unwarped sources joins the per-pixel minimum,
            so pixels that a static camera or an object moving with it explain better than the warp contribute no
            gradient.
    """

    def __init__(self, alpha: float = 0.85, automask: bool = True):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self.automask = automask

    def _errors(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, S, 3, H, W) images against (B, 3, H, W) target -> (B, S, H, W) errors."""
        B, S = images.shape[:2]
        targets = target.unsqueeze(1).expand_as(images).flatten(0, 1)
        return reprojection_error(images.flatten(0, 1), targets, self.alpha).view(B, S, *images.shape[-2:])

    def forward(self, target: torch.Tensor, warped: torch.Tensor | Sequence[torch.Tensor],
                valid: torch.Tensor | Sequence[torch.Tensor] | None = None, sources: torch.Tensor | None = None,
                pair_valid: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Photometric loss of the target against the sources warped into it.

        Args:
            target: (B, 3, H, W) target image in [0, 1].
            warped: (B, S, 3, H, W) the S sources warped into the target view, or a list of these, one per scale
                (each scale's depth upsampled to the input resolution by the caller).
            valid: (B, S, 1, H, W) bool, where each warp is valid (a list aligned with ``warped``); None = all valid.
            sources: (B, S, 3, H, W) the unwarped sources; required when ``automask`` is on.
            pair_valid: (B, S) bool; False drops a source frame entirely (its pose solve failed).

        Returns:
            loss: scalar, mean over scales of the mean per-pixel minimum error over included pixels; 0 (with a
                finite gradient) when no pixel is included.
            metrics: ``photometric/loss`` (scalar), ``photometric/automask_fraction`` (share of included pixels
                where the identity error won, mean over scales), ``photometric/excluded_fraction`` (share of pixels
                valid in no source), and at the first scale ``photometric/min_error`` (B, 1, H, W) (0 where
                excluded), ``photometric/automask`` and ``photometric/included`` (B, 1, H, W) bool maps.

        Raises:
            ValueError: wrong shapes, mismatched scale lists, or ``sources`` missing with ``automask`` on.
        """
        dims = check_shape(target, "target", ("B", 3, "H", "W"))
        warped_scales = _as_scale_list(warped, "warped")
        valid_scales = [None] * len(warped_scales) if valid is None else _as_scale_list(valid, "valid")
        if len(valid_scales) != len(warped_scales):
            raise ValueError(f"valid has {len(valid_scales)} scales but warped has {len(warped_scales)}")
        for i, (w, v) in enumerate(zip(warped_scales, valid_scales)):
            check_shape(w, f"warped[{i}]", ("B", "S", 3, "H", "W"), dims)
            if v is not None:
                check_shape(v, f"valid[{i}]", ("B", "S", 1, "H", "W"), dims, floating=False)
        B, S = dims["B"], dims["S"]
        if pair_valid is None:
            pair_valid = torch.ones(B, S, dtype=torch.bool, device=target.device)
        check_shape(pair_valid, "pair_valid", ("B", "S"), dims, floating=False)
        pair_usable = pair_valid.bool()[:, :, None, None]  # (B, S, 1, 1)

        # SSIM's small constants and variance differences lose too much in float16 (autocast); work in >= float32.
        work_dtype = torch.promote_types(target.dtype, torch.float32)
        target = target.to(work_dtype)
        inf = torch.tensor(float("inf"), dtype=work_dtype, device=target.device)

        min_identity = None
        if self.automask:
            if sources is None:
                raise ValueError("sources (B, S, 3, H, W) is required when automask is on")
            check_shape(sources, "sources", ("B", "S", 3, "H", "W"), dims)
            identity = self._errors(sources.to(work_dtype), target)  # (B, S, H, W)
            identity = identity + torch.randn_like(identity) * IDENTITY_TIE_BREAK_STD
            min_identity = torch.where(pair_usable, identity, inf).min(dim=1).values  # (B, H, W)

        scale_losses, automask_fractions, excluded_fractions = [], [], []
        first_scale_maps = None
        for w, v in zip(warped_scales, valid_scales):
            errors = self._errors(w.to(work_dtype), target)  # (B, S, H, W)
            usable = pair_usable.expand_as(errors) if v is None else (v.squeeze(2).bool() & pair_usable)
            min_reprojection = torch.where(usable, errors, inf).min(dim=1).values  # (B, H, W)
            included = usable.any(dim=1)  # (B, H, W)
            if min_identity is None:
                per_pixel = min_reprojection
                automasked = torch.zeros_like(included)
            else:
                per_pixel = torch.minimum(min_identity, min_reprojection)
                automasked = (min_identity < min_reprojection) & included
            per_pixel = torch.where(included, per_pixel, torch.zeros_like(per_pixel))
            count = included.sum()
            scale_losses.append(per_pixel.sum() / count.clamp(min=1))
            automask_fractions.append(automasked.sum() / count.clamp(min=1))
            excluded_fractions.append(1.0 - count / included.numel())
            if first_scale_maps is None:
                first_scale_maps = (per_pixel.unsqueeze(1), automasked.unsqueeze(1), included.unsqueeze(1))

        loss = torch.stack(scale_losses).mean()
        min_error, automask_map, included_map = first_scale_maps
        metrics = {
            "photometric/loss": loss.detach(),
            "photometric/automask_fraction": torch.stack(automask_fractions).mean().detach(),
            "photometric/excluded_fraction": torch.stack(excluded_fractions).mean().detach(),
            "photometric/min_error": min_error.detach(),
            "photometric/automask": automask_map,
            "photometric/included": included_map,
        }
        return loss, metrics
