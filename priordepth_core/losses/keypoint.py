"""KP2D keypoint losses (Tang et al., "Neural Outlier Rejection for Self-Supervised Keypoint Learning", ICLR 2020).

The loss compares KeypointNet's dense outputs for a source and a target image through a warp of source pixels into
the target. A homography gives KP2D's homography adaptation; depth + pose between real frames gives KP3D's
multi-view adaptation. The terms follow TRI-ML/KP2D ``KeypointNetwithIOLoss.py``:

- location: distance from each warped source keypoint to its nearest target keypoint, over pairs closer than
  ``match_threshold_px`` (KP2D: 4 px), away from the border cells;
- descriptor: per-keypoint triplet loss; the positive is the target descriptor at the warped source position, the
  negative the nearest target descriptor (among those at other warped positions) lying more than
  ``relax_field_px`` away in x or y (KP2D: 4 px), margin 0.2;
- score: ``(s_source + s_target_nearest) * (d - mean d)`` over matched pairs (low-error pairs are pushed to high
  scores), plus the mean squared difference between the source score and the target score sampled at the warped
  position.

KP2D's IO-Net outlier loss is not part of this module. Unlike KP2D (``align_corners=True`` on the image size minus
one), maps are sampled with pixel centres at integers and ``align_corners=False``, the same convention as the rest
of the library, and points that warp outside the target image or behind the camera are excluded from every term.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_perspective_transform, warp_perspective
from torch import nn

from ..geometry.validation import check_shape
from ..geometry.warp import pixels_to_grid

WarpFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# Homogeneous coordinates this close to zero map to infinity; such points are flagged invalid instead.
HOMOGENEOUS_EPS = 1e-8


def _inside(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., 2) pixel coordinates -> (...) bool, inside the outer pixel centres [0, W-1] x [0, H-1]."""
    x, y = points[..., 0], points[..., 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def apply_homography(H: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map pixel coordinates through homographies.

    Args:
        H: (B, 3, 3) homography mapping source pixels to target pixels.
        points: (B, N, 2) source pixel coordinates ``(x, y)``.

    Returns:
        mapped: (B, N, 2) target pixel coordinates (0 where invalid).
        valid: (B, N) bool, the homogeneous coordinate is positive (the point does not cross the horizon line).
    """
    dims = check_shape(H, "H", ("B", 3, 3))
    check_shape(points, "points", ("B", "N", 2), dims)
    homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)  # (B, N, 3)
    mapped = homogeneous @ H.to(points.dtype).transpose(1, 2)  # (B, N, 3)
    w = mapped[..., 2:]
    valid = w[..., 0] > HOMOGENEOUS_EPS
    # Divide by a safe denominator so neither the value nor its gradient is inf/NaN for invalid points.
    safe_w = torch.where(valid.unsqueeze(-1), w, torch.ones_like(w))
    xy = torch.where(valid.unsqueeze(-1), mapped[..., :2] / safe_w, torch.zeros_like(points))
    return xy, valid


def homography_warp_fn(H_target_source: torch.Tensor, image_size: tuple[int, int] | None = None) -> WarpFn:
    """A ``warp_fn`` for :class:`KeypointLoss` from homographies.

    Args:
        H_target_source: (B, 3, 3) maps source pixels to target pixels.
        image_size: ``(H, W)`` of the target image; when given, points landing outside it are invalid.

    Returns:
        ``warp_fn(points (B, N, 2)) -> (points in target (B, N, 2), valid (B, N) bool)``, differentiable in points.
    """
    check_shape(H_target_source, "H_target_source", ("B", 3, 3))

    def warp_fn(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mapped, valid = apply_homography(H_target_source, points)
        if image_size is not None:
            valid = valid & _inside(mapped, *image_size)
        return mapped, valid

    return warp_fn


def sample_random_homography(batch: int, height: int, width: int, patch_ratio: float = 0.8,
                             scaling_amplitude: float = 0.1, perspective_amplitude: float = 0.1,
                             max_angle_deg: float = 15.0, translation: bool = True,
                             generator: torch.Generator | None = None, device: torch.device | str | None = None,
                             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random homographies for homography adaptation, in the manner of SuperPoint/KP2D ``sample_homography``.

    A centred patch covering ``patch_ratio`` of the image is perturbed (each corner moved independently by up to
    ``perspective_amplitude`` of the patch half-size, scaled by ``1 ± scaling_amplitude``, rotated by up to
    ``max_angle_deg``), shrunk about the image centre if it no longer fits inside the image, and shifted by a random
    translation that keeps it inside. The homography maps the patch onto the full target image, so every pixel of
    the warped image sees the original image (no black borders).

    Args:
        batch: number of homographies B.
        height, width: image size (the same for source and target).
        patch_ratio: patch size relative to the image, in (0, 1].
        scaling_amplitude, perspective_amplitude, max_angle_deg: perturbation ranges (uniform).
        translation: add a random translation within the remaining margin.
        generator: random generator (CPU) for reproducible draws.
        device, dtype: of the result.

    Returns:
        (B, 3, 3) ``H_target_source`` mapping original-image pixels to warped-image pixels, ``H[2, 2] = 1``.
    """
    if batch < 1 or height < 2 or width < 2:
        raise ValueError(f"batch must be >= 1 and the image at least 2x2, got batch={batch}, size=({height}, {width})")
    if not 0 < patch_ratio <= 1:
        raise ValueError(f"patch_ratio must be in (0, 1], got {patch_ratio}")

    def uniform(*shape: int) -> torch.Tensor:  # in [-1, 1], float64 on the CPU for exact geometry
        return torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1

    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=torch.float64)
    half = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=torch.float64)
    unit_corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    offsets = (unit_corners * patch_ratio).expand(batch, 4, 2) * half  # (B, 4, 2) patch corners about the centre
    offsets = offsets + uniform(batch, 4, 2) * perspective_amplitude * patch_ratio * half
    offsets = offsets * (1 + uniform(batch, 1, 1) * scaling_amplitude)
    angle = uniform(batch) * math.radians(max_angle_deg)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
    offsets = offsets @ rotation.transpose(1, 2)
    # Shrink about the centre until the patch fits, then translate within what is left.
    extent = offsets.abs().amax(dim=1)  # (B, 2)
    shrink = (half / extent).amin(dim=1, keepdim=True).clamp(max=1.0)  # (B, 1)
    offsets = offsets * shrink.unsqueeze(-1)
    corners = centre + offsets
    if translation:
        low = (-corners.amin(dim=1)).clamp(max=0.0)  # (B, 2), how far it may move towards 0 (<= 0)
        high = (centre * 2 - corners.amax(dim=1)).clamp(min=0.0)  # how far towards W-1 / H-1
        shift = low + (high - low) * (uniform(batch, 2) + 1) / 2
        corners = corners + shift.unsqueeze(1)
    image_corners = (centre + unit_corners * half).expand(batch, 4, 2)
    H = get_perspective_transform(corners, image_corners.contiguous())
    H = H / H[:, 2:, 2:]
    return H.to(device=device, dtype=dtype)


def warp_image_homography(image: torch.Tensor, H_target_source: torch.Tensor,
                          size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp an image by a homography (kornia ``warp_perspective``, bilinear).

    kornia normalises pixel coordinates with ``align_corners=True``, i.e. pixel centres at integers, which is this
    library's convention, so ``H`` is used as is.

    Args:
        image: (B, C, H, W) source image.
        H_target_source: (B, 3, 3) maps source pixels to target pixels.
        size: ``(H_t, W_t)`` of the target; defaults to the source size.

    Returns:
        warped: (B, C, H_t, W_t) the target image (0 where it sees nothing of the source).
        valid: (B, 1, H_t, W_t) bool, the target pixel maps inside the source image.
    """
    dims = check_shape(image, "image", ("B", "C", "H", "W"))
    check_shape(H_target_source, "H_target_source", ("B", 3, 3), dims)
    height, width = image.shape[-2:] if size is None else size
    H = H_target_source.to(image.dtype)
    warped = warp_perspective(image, H, (height, width), mode="bilinear", padding_mode="zeros", align_corners=True)
    ys, xs = torch.meshgrid(torch.arange(height, device=image.device, dtype=image.dtype),
                            torch.arange(width, device=image.device, dtype=image.dtype), indexing="ij")
    target_pixels = torch.stack([xs, ys], dim=-1).reshape(1, -1, 2).expand(image.shape[0], -1, -1)
    source_pixels, in_front = apply_homography(torch.linalg.inv(H), target_pixels)
    valid = in_front & _inside(source_pixels, *image.shape[-2:])
    return warped, valid.view(-1, 1, height, width)


def _sample_map(feature: torch.Tensor, pixels: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Bilinear sample of a (B, C, h, w) map covering an image of ``image_size`` at (B, N, 2) pixels -> (B, N, C)."""
    grid = pixels_to_grid(pixels.to(feature.dtype), *image_size).unsqueeze(1)  # (B, 1, N, 2)
    sampled = F.grid_sample(feature, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (B, C, 1, N)
    return sampled[:, :, 0].transpose(1, 2)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask``; 0 (with zero gradient) when the mask is empty. Masked-out values are
    replaced before summing so that NaN/inf there cannot leak into the result or its gradient."""
    values = torch.where(mask, values, torch.zeros_like(values))
    return values.sum() / mask.sum().clamp(min=1)


class KeypointLoss(nn.Module):
    """KP2D keypoint losses between a source and a target image related by a known warp.

    Args:
        location_weight: weight of the location term (KP2D ``keypoint_loss_weight`` 1.0).
        descriptor_weight: weight of the triplet term (KP2D: ``descriptor_loss_weight`` 2.0 times a factor 2 in its
            forward = 4.0).
        score_weight: weight of the distance-weighted score term (KP2D 1.0).
        score_consistency_weight: weight of the score MSE term (KP2D: ``score_loss_weight`` times 2 = 2.0).
        match_threshold_px: a warped source keypoint counts as matched if a target keypoint lies closer (KP2D 4).
        relax_field_px: negatives closer than this in both x and y to the positive's position are not negatives
            (KP2D 4).
        margin: triplet margin (KP2D 0.2).
        cell: KeypointNet's cell size; the image is ``(Hc * cell, Wc * cell)`` unless given to ``forward``.
        border_cells: cells this close to the map border are left out (KP2D 1).
    """

    def __init__(self, location_weight: float = 1.0, descriptor_weight: float = 4.0, score_weight: float = 1.0,
                 score_consistency_weight: float = 2.0, match_threshold_px: float = 4.0, relax_field_px: float = 4.0,
                 margin: float = 0.2, cell: int = 8, border_cells: int = 1):
        super().__init__()
        if match_threshold_px <= 0 or relax_field_px < 0 or margin < 0 or cell < 1 or border_cells < 0:
            raise ValueError("match_threshold_px must be positive; relax_field_px, margin, border_cells "
                             "non-negative; cell at least 1")
        self.location_weight = location_weight
        self.descriptor_weight = descriptor_weight
        self.score_weight = score_weight
        self.score_consistency_weight = score_consistency_weight
        self.match_threshold_px = match_threshold_px
        self.relax_field_px = relax_field_px
        self.margin = margin
        self.cell = cell
        self.border_cells = border_cells

    @staticmethod
    def _check_output(output: dict[str, torch.Tensor], name: str, dims: dict[str, int]) -> None:
        if not isinstance(output, dict) or not {"score", "coord", "desc"} <= output.keys():
            raise ValueError(f"{name} must be a dict with 'score', 'coord' and 'desc'")
        check_shape(output["score"], f"{name}['score']", ("B", 1, "Hc", "Wc"), dims)
        check_shape(output["coord"], f"{name}['coord']", ("B", 2, "Hc", "Wc"), dims)
        check_shape(output["desc"], f"{name}['desc']", ("B", "D", f"Hd_{name}", f"Wd_{name}"), dims)

    def _border_mask(self, batch: int, Hc: int, Wc: int, device: torch.device) -> torch.Tensor:
        mask = torch.zeros(Hc, Wc, dtype=torch.bool, device=device)
        b = self.border_cells
        mask[b:Hc - b, b:Wc - b] = True
        return mask.flatten().expand(batch, -1)  # (B, N)

    def _descriptor_loss(self, desc_source: torch.Tensor, desc_target: torch.Tensor, source_pixels: torch.Tensor,
                         positive_pixels: torch.Tensor, keep: torch.Tensor,
                         image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Triplet loss with the hardest negative per anchor, and the nearest-neighbour recall."""
        anchors = F.normalize(_sample_map(desc_source, source_pixels, image_size), dim=-1)  # (B, N, D)
        positives = F.normalize(_sample_map(desc_target, positive_pixels, image_size), dim=-1)  # (B, N, D)
        with torch.no_grad():
            cosine = (anchors @ positives.transpose(1, 2)).clamp(-1, 1)  # (B, N, N)
            distance = torch.sqrt(2 - 2 * cosine)
            offset = (positive_pixels.unsqueeze(2) - positive_pixels.unsqueeze(1)).abs()  # (B, N, N, 2)
            too_close = (offset <= self.relax_field_px).all(dim=-1)
            candidate = keep.unsqueeze(1) & ~too_close  # negatives: kept and far enough from the positive
            hardest = torch.where(candidate, distance, torch.full_like(distance, float("inf"))).argmin(dim=2)
            has_negative = candidate.any(dim=2) & keep
            nearest = torch.where(keep.unsqueeze(1), distance, torch.full_like(distance, float("inf"))).argmin(dim=2)
            index = torch.arange(keep.shape[1], device=keep.device).expand_as(nearest)
            recall = _masked_mean((nearest == index).to(distance.dtype), keep)
        negatives = torch.gather(positives, 1, hardest.unsqueeze(-1).expand_as(positives))  # (B, N, D)
        triplet = F.triplet_margin_loss(anchors.flatten(0, 1), positives.flatten(0, 1), negatives.flatten(0, 1),
                                        margin=self.margin, reduction="none").view_as(keep)
        return _masked_mean(triplet, has_negative), recall

    def forward(self, out_source: dict[str, torch.Tensor], out_target: dict[str, torch.Tensor], warp_fn: WarpFn,
                image_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """KP2D losses of one source/target pair.

        Args:
            out_source, out_target: KeypointNet outputs, each ``{"score": (B, 1, Hc, Wc) in [0, 1], "coord":
                (B, 2, Hc, Wc) pixel (x, y), "desc": (B, D, Hd, Wd) unit-norm}``; the descriptor map may have any
                resolution covering the same image.
            warp_fn: ``warp_fn(points (B, N, 2) source pixels) -> (points in target (B, N, 2), valid (B, N) bool)``,
                differentiable in the points (:func:`homography_warp_fn`, or a depth + pose reprojection).
            image_size: ``(H, W)`` of the input images; defaults to ``(Hc * cell, Wc * cell)``.

        Returns:
            loss: scalar weighted sum; 0 with finite gradients when no keypoint survives the masks.
            metrics: ``keypoint/location_loss``, ``keypoint/descriptor_loss``, ``keypoint/score_loss``,
                ``keypoint/score_consistency``, ``keypoint/visible_fraction`` (source keypoints inside the target
                and off the border), ``keypoint/matched_fraction`` (of visible, a target keypoint within the
                threshold), ``keypoint/mean_location_error_px`` (over matched) and ``keypoint/descriptor_recall``.
        """
        dims: dict[str, int] = {}
        self._check_output(out_source, "out_source", dims)
        self._check_output(out_target, "out_target", dims)
        B, Hc, Wc = dims["B"], dims["Hc"], dims["Wc"]
        image_size = (Hc * self.cell, Wc * self.cell) if image_size is None else tuple(image_size)

        work_dtype = torch.promote_types(out_source["coord"].dtype, torch.float32)
        source_score = out_source["score"].to(work_dtype).flatten(1)  # (B, N)
        target_score = out_target["score"].to(work_dtype)
        source_pixels = out_source["coord"].to(work_dtype).flatten(2).transpose(1, 2)  # (B, N, 2)
        target_pixels = out_target["coord"].to(work_dtype).flatten(2).transpose(1, 2)  # (B, M, 2)

        warped, warp_valid = warp_fn(source_pixels)
        check_shape(warped, "warp_fn points", ("B", "N", 2), {"B": B, "N": source_pixels.shape[1]})
        check_shape(warp_valid, "warp_fn valid", ("B", "N"), {"B": B, "N": source_pixels.shape[1]}, floating=False)
        keep = warp_valid.bool() & torch.isfinite(warped).all(-1) & _inside(warped, *image_size)
        keep = keep & self._border_mask(B, Hc, Wc, keep.device)
        warped = torch.where(keep.unsqueeze(-1), warped.to(work_dtype), torch.zeros_like(source_pixels))

        # Location: nearest target keypoint to each warped source keypoint.
        distance, nearest = torch.cdist(warped, target_pixels).min(dim=2)  # (B, N)
        matched = keep & (distance < self.match_threshold_px)
        location_loss = _masked_mean(distance, matched)

        # Score: reward high scores where the pair's distance is below the mean distance, and consistency.
        target_score_nearest = torch.gather(target_score.flatten(1), 1, nearest)
        centred_distance = distance - location_loss
        score_loss = _masked_mean((source_score + target_score_nearest) * centred_distance, matched)
        target_score_at_warped = _sample_map(target_score, warped.detach(), image_size)[..., 0]  # (B, N)
        score_consistency = _masked_mean((target_score_at_warped - source_score) ** 2, keep)

        descriptor_loss, recall = self._descriptor_loss(
            out_source["desc"].to(work_dtype), out_target["desc"].to(work_dtype), source_pixels.detach(),
            warped.detach(), keep, image_size)

        loss = (self.location_weight * location_loss + self.descriptor_weight * descriptor_loss
                + self.score_weight * score_loss + self.score_consistency_weight * score_consistency)
        visible = keep.sum()
        metrics = {
            "keypoint/loss": loss.detach(),
            "keypoint/location_loss": location_loss.detach(),
            "keypoint/descriptor_loss": descriptor_loss.detach(),
            "keypoint/score_loss": score_loss.detach(),
            "keypoint/score_consistency": score_consistency.detach(),
            "keypoint/visible_fraction": visible / keep.numel(),
            "keypoint/matched_fraction": matched.sum() / visible.clamp(min=1),
            "keypoint/mean_location_error_px": location_loss.detach(),
            "keypoint/descriptor_recall": recall,
        }
        return loss, metrics
