"""The trainable model: DepthNet + (KeypointNet | PoseNet) + a pose source, mapping a batch dict to outputs.

Pose sources (``pose.source``):

- ``posenet``: MonoDepth2's PoseNet regresses ``T_context_target`` from the stacked frames.
- ``pnp``: target keypoints are lifted to 3D with the predicted depth and a robust, differentiable PnP solves the
  pose to the matched context keypoints. The translation then carries the depth network's scale, consistent with
  view synthesis.
- ``essential``: rotation and translation direction from the weighted essential matrix on matched keypoints; the
  translation length from the predicted depth (triangulated vs predicted depth at inliers). Pure rotation is
  detected by the solver and gives t = 0.

A pair whose solve is invalid or has fewer than ``pose.min_inliers`` inliers is reported in ``pose_valid`` and its
photometric term is masked by the objective (never a NaN, never a silent garbage pose), or, with
``pose.fallback: posenet``, warped with the PoseNet's pose instead (``pose_fallback``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..geometry.camera import unproject_points
from ..geometry.pose import solve_essential_ransac, solve_pnp_ransac
from ..geometry.pose.triangulation import recover_translation_scale
from ..geometry.se3 import make_transform
from ..losses.keypoint import sample_random_homography, warp_image_homography
from ..losses.sparse_prior import sample_depth_at
from ..models import DepthNet, KeypointNet, PoseNet, gather_matches, match_descriptors, select_keypoints
from .config import ExperimentConfig


class DepthPoseModel(nn.Module):
    """Networks and pose estimation for one training step.

    Args:
        config: the experiment; ``model`` sizes the networks, ``pose`` picks the source, ``loss.keypoint_weight > 0``
            adds the homography-adapted keypoint branch.
    """

    def __init__(self, config: ExperimentConfig):
        super().__init__()
        self.config = config
        mc, pc = config.model, config.pose
        self.depth_net = DepthNet(num_layers=mc.num_layers, lite=mc.lite, min_depth=mc.min_depth,
                                  max_depth=mc.max_depth, scales=tuple(config.loss.scales) if 0 in config.loss.scales
                                  else (0, *config.loss.scales), pretrained_path=mc.pretrained_path or None)
        sources = {pc.source, pc.warmup_source} - {""}
        self.needs_keypoints = bool(sources & {"essential", "pnp"}) or config.loss.keypoint_weight > 0
        self.keypoint_net = (KeypointNet(descriptor_dim=mc.descriptor_dim, lite=mc.keypoint_lite,
                                         dropout=mc.keypoint_dropout) if self.needs_keypoints else None)
        if self.keypoint_net is not None and mc.keypoint_init:
            self._load_keypoint_init(mc.keypoint_init)
        if self.keypoint_net is not None and mc.keypoint_frozen:
            self.keypoint_net.requires_grad_(False)
            self.keypoint_net.eval()
        self.pose_net = (PoseNet(num_layers=18, pretrained_path=mc.pretrained_path or None)
                         if "posenet" in sources or pc.posenet_seed or pc.fallback == "posenet" else None)

    def _load_keypoint_init(self, path: str) -> None:
        from .keypoints import load_keypoint_net

        pretrained, kp_config = load_keypoint_net(path)
        mc = self.config.model
        if int(kp_config["descriptor_dim"]) != mc.descriptor_dim or bool(kp_config["lite"]) != mc.keypoint_lite:
            raise ValueError(f"model.keypoint_init {path} has descriptor_dim={kp_config['descriptor_dim']}, "
                             f"lite={kp_config['lite']} but the config asks for descriptor_dim={mc.descriptor_dim}, "
                             f"keypoint_lite={mc.keypoint_lite}")
        self.keypoint_net.load_state_dict(pretrained.state_dict())

    def train(self, mode: bool = True) -> DepthPoseModel:
        super().train(mode)
        if self.keypoint_net is not None and self.config.model.keypoint_frozen:
            self.keypoint_net.eval()
        return self

    def active_pose_source(self, step: int) -> str:
        pc = self.config.pose
        if pc.warmup_source and step < pc.warmup_steps:
            return pc.warmup_source
        return pc.source

    # ------------------------------------------------------------------------------------------------ keypoints
    def _keypoints(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        dense = self.keypoint_net(images)
        selected = select_keypoints(dense, top_k=self.config.pose.top_k)
        return dense, selected

    @staticmethod
    def _slice(outputs: dict[str, torch.Tensor], index: slice) -> dict[str, torch.Tensor]:
        return {key: value[index] for key, value in outputs.items()}

    # ------------------------------------------------------------------------------------------------ poses
    def _solve_pair(self, source: str, x_target: torch.Tensor, x_context: torch.Tensor, weights: torch.Tensor,
                    depth_target: torch.Tensor, K: torch.Tensor, init: torch.Tensor | None) -> dict[str, torch.Tensor]:
        pc = self.config.pose
        if source == "pnp":
            lift_depth = depth_target.detach() if pc.detach_depth else depth_target
            depth_at_kp = sample_depth_at(lift_depth, x_target)  # (B, N)
            points_target = unproject_points(x_target, depth_at_kp, K)
            init_pose = None if init is None else (init[:, :3, :3], init[:, :3, 3])
            est = solve_pnp_ransac(points_target, x_context, K, weights, num_hypotheses=pc.ransac_hypotheses,
                                   threshold_px=pc.ransac_threshold_px, init=init_pose)
            t = est.t
            pure_rotation = torch.zeros_like(est.valid)
        else:
            est = solve_essential_ransac(x_target, x_context, K, weights, num_hypotheses=pc.ransac_hypotheses,
                                         threshold_px=pc.ransac_threshold_px)
            pure_rotation = est.info.get("pure_rotation", torch.zeros_like(est.valid))
            inlier_weights = weights * est.inliers.to(weights.dtype)
            scale, scale_valid = recover_translation_scale(x_target, x_context, K, est.R, est.t,
                                                           depth_target, weights=inlier_weights)
            t = torch.where(pure_rotation[:, None], torch.zeros_like(est.t), est.t * scale[:, None])
            est_valid = est.valid | pure_rotation  # a detected pure rotation has a correct R and t = 0
            est = type(est)(est.R, est.t, est_valid & (scale_valid | pure_rotation), est.inliers, est.info)
        num_inliers = est.inliers.sum(dim=1)
        valid = est.valid & (num_inliers >= pc.min_inliers)
        T = make_transform(est.R, t)
        identity = torch.eye(4, dtype=T.dtype, device=T.device).expand_as(T)
        T = torch.where(valid[:, None, None], T, identity)
        return {"T": T, "valid": valid, "inliers": est.inliers, "num_inliers": num_inliers,
                "pure_rotation": pure_rotation}

    def forward(self, batch: dict[str, Any], step: int = 0) -> dict[str, Any]:
        """Run the networks and estimate the poses.

        Args:
            batch: the sample dict of :mod:`priordepth_core.data.sample`, collated (``image`` (B,3,H,W), ``context``
                (B,S,3,H,W), ``context_offsets`` (B,S), ``K`` (B,3,3)).
            step: optimiser step, for the pose-source warm-up.

        Returns:
            ``disp``/``depth``: lists over scales of (B,1,h,w); ``T_context_target`` (B,S,4,4); ``pose_valid`` (B,S)
            bool (the source's own pose is valid); ``pose_fallback`` (B,S) bool when failed pairs use the PoseNet's
            pose; ``pose_source`` str; and when keypoints are used: ``keypoints`` (list over 1+S images of the
            selected keypoints), ``matches`` (per context: x_target, x_context (B,N,2), weights (B,N), inliers
            (B,N)), ``keypoint_dense`` (dense outputs of the target and contexts), ``homography`` and
            ``keypoint_dense_warped`` for homography adaptation.
        """
        image, context, K = batch["image"], batch["context"], batch["K"]
        B, S = context.shape[:2]
        offsets = batch["context_offsets"][0].tolist()
        depth_out = self.depth_net(image)
        outputs: dict[str, Any] = {"disp": depth_out["disp"], "depth": depth_out["depth"]}
        source = self.active_pose_source(step)
        outputs["pose_source"] = source

        posenet_T = None
        if self.pose_net is not None and (source == "posenet" or self.config.pose.posenet_seed
                                          or self.config.pose.fallback == "posenet"):
            posenet_T = torch.stack([self.pose_net.T_context_target(image, context[:, s], offsets[s])
                                     for s in range(S)], dim=1)  # (B, S, 4, 4)

        if self.needs_keypoints:
            # Target first, then the contexts context-major (all of context 0, then all of context 1, ...): the
            # slices B*(1+s):B*(2+s) below and in the objective pick context s of every sample.
            all_images = torch.cat([image, context.transpose(0, 1).flatten(0, 1)], dim=0)
            dense, selected = self._keypoints(all_images)
            outputs["keypoint_dense"] = dense
            outputs["keypoints"] = selected
            if self.training and self.config.loss.keypoint_weight > 0:
                H = sample_random_homography(B, image.shape[-2], image.shape[-1], device=image.device,
                                             dtype=image.dtype)
                warped, _ = warp_image_homography(image, H)
                outputs["homography"] = H
                outputs["keypoint_dense_warped"] = self.keypoint_net(warped)

        if source == "posenet":
            outputs["T_context_target"] = posenet_T
            outputs["pose_valid"] = torch.ones(B, S, dtype=torch.bool, device=image.device)
            return outputs

        target_kp = self._slice(selected, slice(0, B))
        depth_target = depth_out["depth"][0]
        poses, valids, matches = [], [], []
        for s in range(S):
            context_kp = self._slice(selected, slice(B * (1 + s), B * (2 + s)))
            match = match_descriptors(target_kp["descriptors"], context_kp["descriptors"], target_kp["valid"],
                                      context_kp["valid"])
            x_target, x_context, weights = gather_matches(target_kp, context_kp, match)
            init = None if posenet_T is None else posenet_T[:, s].detach()
            solved = self._solve_pair(source, x_target, x_context, weights, depth_target, K, init)
            poses.append(solved["T"])
            valids.append(solved["valid"])
            matches.append({"x_target": x_target, "x_context": x_context, "weights": weights,
                            "inliers": solved["inliers"], "num_inliers": solved["num_inliers"],
                            "pure_rotation": solved["pure_rotation"]})
        T_solved = torch.stack(poses, dim=1)
        solved_valid = torch.stack(valids, dim=1)
        if self.config.pose.fallback == "posenet" and posenet_T is not None:
            outputs["pose_fallback"] = ~solved_valid
            T_solved = torch.where(solved_valid[..., None, None], T_solved, posenet_T.to(T_solved.dtype))
        outputs["T_context_target"] = T_solved
        outputs["pose_valid"] = solved_valid
        outputs["matches"] = matches
        return outputs
