"""The self-supervised objective: view synthesis + photometric, smoothness, keypoint and sparse-prior losses."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry.camera import project_points, unproject_points
from ..geometry.pose.triangulation import triangulate_with_info
from ..geometry.se3 import rotation_error_deg, translation_direction_error_deg
from ..geometry.warp import warp_image
from ..losses import KeypointLoss, PhotometricLoss, SmoothnessLoss, SparseDepthPriorLoss
from ..losses.keypoint import homography_warp_fn
from ..losses.sparse_prior import sample_depth_at
from .config import ExperimentConfig


def depth_pose_warp_fn(depth_target: torch.Tensor, T_context_target: torch.Tensor, K: torch.Tensor,
                       pair_valid: torch.Tensor):
    """A keypoint-loss warp from target pixels to context pixels through (detached) depth and pose (KP3D).

    Args:
        depth_target: (B, 1, H, W) predicted target depth.
        T_context_target: (B, 4, 4) the pose used for this pair.
        K: (B, 3, 3) intrinsics.
        pair_valid: (B,) bool; pixels of failed pairs are never valid.

    Returns:
        ``warp_fn(points (B, N, 2)) -> (points in the context (B, N, 2), valid (B, N))``.
    """
    depth_target = depth_target.detach()
    T = T_context_target.detach()
    height, width = depth_target.shape[-2:]

    def warp_fn(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        depth = sample_depth_at(depth_target, points)
        points_3d = unproject_points(points, depth, K)
        points_context = points_3d @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]
        pixels, _, in_front = project_points(points_context, K)
        inside = ((pixels[..., 0] >= 0) & (pixels[..., 0] <= width - 1) & (pixels[..., 1] >= 0)
                  & (pixels[..., 1] <= height - 1))
        return pixels, in_front & inside & (depth > 0) & pair_valid[:, None]

    return warp_fn


class SelfSupervisedObjective(nn.Module):
    """Losses of one training step, with their metrics.

    Args:
        config: the experiment (``loss`` section: weights, scales, automask, parallax threshold).
    """

    def __init__(self, config: ExperimentConfig):
        super().__init__()
        lc = config.loss
        self.scales = list(lc.scales)
        self.photometric = PhotometricLoss(alpha=lc.ssim_alpha, automask=lc.automask)
        self.smoothness = SmoothnessLoss(weight=lc.smoothness_weight)
        self.keypoint_weight = lc.keypoint_weight
        self.keypoint = KeypointLoss() if lc.keypoint_weight > 0 else None
        self.sparse_prior_weight = lc.sparse_prior_weight
        self.depth_gauge_weight = lc.depth_gauge_weight
        mc = config.model
        self.log_gauge_depth = math.log(lc.depth_gauge or math.sqrt(mc.min_depth * mc.max_depth))
        self.sparse_prior = (SparseDepthPriorLoss(min_parallax_deg=lc.min_parallax_deg)
                             if lc.sparse_prior_weight > 0 else None)

    def forward(self, batch: dict[str, Any], outputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Total loss and metrics (scalars, plus ``visual/*`` tensors for logging)."""
        image, context, K = batch["image"], batch["context"], batch["K"]
        B, S = context.shape[:2]
        H, W = image.shape[-2:]
        T = outputs["T_context_target"].to(image.dtype)  # (B, S, 4, 4)
        pair_valid = outputs["pose_valid"]
        if "pose_fallback" in outputs:
            pair_valid = pair_valid | outputs["pose_fallback"]

        # Pairs whose pose has no reliable translation warp with a detached depth: they cannot tell depths apart.
        depth_gradient = outputs.get("pose_depth_gradient")
        warped_scales, valid_scales = [], []
        for scale in self.scales:
            depth = outputs["depth"][scale]
            if depth.shape[-2:] != (H, W):  # MonoDepth2: every scale is warped at the input resolution
                depth = F.interpolate(depth, size=(H, W), mode="bilinear", align_corners=False)
            depth = depth.to(image.dtype)
            per_pair = [depth if depth_gradient is None else
                        torch.where(depth_gradient[:, s, None, None, None], depth, depth.detach()) for s in range(S)]
            warped, valid = zip(*(warp_image(context[:, s], per_pair[s], T[:, s], K) for s in range(S)))
            warped_scales.append(torch.stack(warped, dim=1))
            valid_scales.append(torch.stack(valid, dim=1))
        photometric, metrics = self.photometric(image, warped_scales, valid_scales, sources=context,
                                                pair_valid=pair_valid)
        total = photometric

        smooth_total = image.new_zeros(())
        for scale in self.scales:
            disp = outputs["disp"][scale]
            image_s = image if disp.shape[-2:] == (H, W) else F.interpolate(image, size=disp.shape[-2:], mode="area")
            smooth, smooth_metrics = self.smoothness(disp, image_s, scale=scale)
            smooth_total = smooth_total + smooth
            metrics.update(smooth_metrics)
        total = total + smooth_total / len(self.scales)
        metrics["loss/smoothness"] = (smooth_total / len(self.scales)).detach()
        metrics["loss/photometric"] = photometric.detach()

        if self.keypoint is not None and "keypoint_dense" in outputs:
            kp_loss = self._keypoint_loss(outputs, batch, metrics)
            total = total + self.keypoint_weight * kp_loss
            metrics["loss/keypoint"] = kp_loss.detach()
        if self.sparse_prior is not None and "matches" in outputs:
            prior = self._sparse_prior_loss(outputs, K, metrics)
            total = total + self.sparse_prior_weight * prior
            metrics["loss/sparse_prior"] = prior.detach()

        if self.depth_gauge_weight > 0:
            # The mean log depth (not the median, whose gradient reaches a single pixel) of each image.
            mean_log_depth = outputs["depth"][0].flatten(1).log().mean(dim=1)
            gauge = (mean_log_depth - self.log_gauge_depth).pow(2).mean()
            total = total + self.depth_gauge_weight * gauge
            metrics["loss/depth_gauge"] = gauge.detach()
        metrics["depth/median"] = outputs["depth"][0].detach().median()

        metrics["pose/valid_fraction"] = outputs["pose_valid"].float().mean()
        if "pose_fallback" in outputs:
            metrics["pose/fallback_fraction"] = outputs["pose_fallback"].float().mean()
        if "matches" in outputs:
            metrics["pose/mean_inliers"] = torch.stack([m["num_inliers"].float() for m in outputs["matches"]]).mean()
        if "T_context_target" in batch:  # ground truth present (synthetic, TUM): monitor pose accuracy
            metrics.update(self._pose_error_metrics(batch, outputs))
        metrics["visual/warped"] = warped_scales[0].detach()
        metrics["visual/valid"] = valid_scales[0]
        return total, metrics

    def _keypoint_loss(self, outputs: dict[str, Any], batch: dict[str, Any], metrics: dict[str, Any]) -> torch.Tensor:
        dense = outputs["keypoint_dense"]
        B = batch["image"].shape[0]
        S = batch["context"].shape[1]
        target_dense = {key: value[:B] for key, value in dense.items()}
        total = batch["image"].new_zeros(())
        terms = 0
        if "keypoint_dense_warped" in outputs:
            loss, kp_metrics = self.keypoint(target_dense, outputs["keypoint_dense_warped"],
                                             homography_warp_fn(outputs["homography"]))
            total, terms = total + loss, terms + 1
            metrics.update({f"homography/{k}": v for k, v in kp_metrics.items()})
        # KP3D multi-view adaptation: target -> context correspondences through depth and the pose *solved from
        # matches* (present as ``matches``). Not with PoseNet poses (e.g. a warm-up): its early poses are wrong, so the
        # correspondences they imply are wrong (in our handheld run the multi-view descriptor recall was 0.1 against
        # them, 0.84 against the PnP poses after).
        for s in range(S if "matches" in outputs else 0):
            pair_valid = outputs["pose_valid"][:, s]
            if not bool(pair_valid.any()):
                continue
            context_dense = {key: value[B * (1 + s): B * (2 + s)] for key, value in dense.items()}
            warp_fn = depth_pose_warp_fn(outputs["depth"][0], outputs["T_context_target"][:, s], batch["K"],
                                         pair_valid)
            loss, kp_metrics = self.keypoint(target_dense, context_dense, warp_fn)
            total, terms = total + loss, terms + 1
            metrics.update({f"multiview/{k}": v for k, v in kp_metrics.items()})
        return total / max(terms, 1)

    def _sparse_prior_loss(self, outputs: dict[str, Any], K: torch.Tensor, metrics: dict[str, Any]) -> torch.Tensor:
        depth_target = outputs["depth"][0]
        losses = []
        for s, match in enumerate(outputs["matches"]):
            depth_at_kp = sample_depth_at(depth_target, match["x_target"].detach())
            usable = match["inliers"] & outputs["pose_valid"][:, s, None] & ~match["pure_rotation"][:, None]
            if "triangulated_depth" in match:  # the match cache's native-resolution triangulation, in depth scale
                triangulated, parallax = match["triangulated_depth"].detach(), match["parallax_deg"]
                usable = usable & (triangulated > 0)
                if "pose_depth_gradient" in outputs:
                    usable = usable & outputs["pose_depth_gradient"][:, s, None]
            else:
                T = outputs["T_context_target"][:, s].detach()
                tri = triangulate_with_info(match["x_target"].detach(), match["x_context"].detach(), K,
                                            T[:, :3, :3], T[:, :3, 3])
                triangulated, parallax = tri.points[..., 2], tri.parallax_deg
                usable = usable & tri.in_front
            loss, prior_metrics = self.sparse_prior(depth_at_kp, triangulated.to(depth_at_kp.dtype), parallax,
                                                    weights=match["weights"].detach(), valid=usable)
            losses.append(loss)
            metrics.update(prior_metrics)
        return torch.stack(losses).mean()

    @staticmethod
    @torch.no_grad()
    def _pose_error_metrics(batch: dict[str, Any], outputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Rotation error and translation-direction error of the used poses against ground truth (monitoring)."""
        gt = batch["T_context_target"]
        est = outputs["T_context_target"].to(gt.dtype)
        valid = outputs["pose_valid"]
        rot = rotation_error_deg(est[..., :3, :3], gt[..., :3, :3])
        moving = gt[..., :3, 3].norm(dim=-1) > 1e-6
        trans = translation_direction_error_deg(est[..., :3, 3], gt[..., :3, 3])
        metrics = {}
        if bool(valid.any()):
            metrics["pose/rot_err_deg"] = rot[valid].median()
            if bool((valid & moving).any()):
                metrics["pose/tdir_err_deg"] = trans[valid & moving].median()
        return metrics
