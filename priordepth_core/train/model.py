"""The trainable model: DepthNet + (KeypointNet | PoseNet) + a pose source, mapping a batch dict to outputs.

The pose source (``pose.source``, looked up in :mod:`priordepth_core.pose`) finds ``T_context_target`` per context:
``posenet`` (MonoDepth2's PoseNet regression), ``pnp`` (target keypoints lifted with the predicted depth, robust
differentiable PnP: the translation carries the depth network's scale), ``essential`` (rotation and direction from
the weighted essential matrix, length from the predicted depth; pure rotation gives t = 0) or ``pnp_essential``.

A pair whose pose is not supported (invalid, or fewer than ``pose.min_inliers`` inliers) is reported in
``pose_valid`` and its photometric term is masked by the objective (never a NaN, never a silent garbage pose), or,
with ``pose.fallback: posenet``, warped with the PoseNet's pose instead (``pose_fallback``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..losses.keypoint import sample_random_homography, warp_image_homography
from ..models import DepthNet, KeypointNet, PoseNet, gather_matches, match_descriptors, select_keypoints
from ..pose import PoseProblem, PoseSourceSchedule, PoseSourceSettings, build_pose_source
from .config import ExperimentConfig
from .keypoints import load_keypoint_net

# What the frozen match cache adds to a batch (priordepth_core/data/sample.py).
CACHED_MATCH_KEYS = ("match_x_target", "match_x_context", "match_weight", "match_depth_target", "match_parallax_deg",
                     "essential_T_context_target", "essential_status")


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
        settings = PoseSourceSettings(num_hypotheses=pc.ransac_hypotheses, threshold_px=pc.ransac_threshold_px,
                                      min_inliers=pc.min_inliers, differentiable=True, detach_depth=pc.detach_depth)
        self.pose_schedule = PoseSourceSchedule(
            build_pose_source(pc.source, settings, pc.fallback),
            build_pose_source(pc.warmup_source, settings, pc.fallback) if pc.warmup_source else None,
            pc.warmup_steps)
        sources = self.pose_schedule.sources
        self.cached_matches = pc.matches == "cache"
        self.needs_keypoints = ((any(s.needs_matches for s in sources) and not self.cached_matches)
                                or config.loss.keypoint_weight > 0)
        self.keypoint_net = (KeypointNet(descriptor_dim=mc.descriptor_dim, lite=mc.keypoint_lite,
                                         dropout=mc.keypoint_dropout, descriptor_head=mc.keypoint_descriptor_head)
                             if self.needs_keypoints else None)
        if self.keypoint_net is not None and mc.keypoint_init:
            self._load_keypoint_init(mc.keypoint_init)
        if self.keypoint_net is not None and mc.keypoint_frozen:
            self.keypoint_net.requires_grad_(False)
            self.keypoint_net.eval()
        self.pose_net = (PoseNet(num_layers=18, pretrained_path=mc.pretrained_path or None)
                         if any(s.needs_posenet for s in sources) or pc.posenet_seed else None)

    def _load_keypoint_init(self, path: str) -> None:
        pretrained, kp_config = load_keypoint_net(path)
        mc = self.config.model
        head = kp_config.get("descriptor_head", "kp2d")
        if (int(kp_config["descriptor_dim"]) != mc.descriptor_dim or bool(kp_config["lite"]) != mc.keypoint_lite
                or head != mc.keypoint_descriptor_head):
            raise ValueError(f"model.keypoint_init {path} has descriptor_dim={kp_config['descriptor_dim']}, "
                             f"lite={kp_config['lite']}, descriptor_head={head} but the config asks for "
                             f"descriptor_dim={mc.descriptor_dim}, keypoint_lite={mc.keypoint_lite}, "
                             f"keypoint_descriptor_head={mc.keypoint_descriptor_head}")
        self.keypoint_net.load_state_dict(pretrained.state_dict())

    def train(self, mode: bool = True) -> DepthPoseModel:
        super().train(mode)
        if self.keypoint_net is not None and self.config.model.keypoint_frozen:
            self.keypoint_net.eval()
        return self

    def active_pose_source(self, step: int) -> str:
        """Name of the pose source in use at optimiser step ``step`` (the warm-up source first, if any)."""
        return self.pose_schedule.at(step).name

    # ------------------------------------------------------------------------------------------------ keypoints
    def _keypoints(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        dense = self.keypoint_net(images)
        selected = select_keypoints(dense, top_k=self.config.pose.top_k)
        return dense, selected

    @staticmethod
    def _slice(outputs: dict[str, torch.Tensor], index: slice) -> dict[str, torch.Tensor]:
        return {key: value[index] for key, value in outputs.items()}

    def forward(self, batch: dict[str, Any], step: int = 0) -> dict[str, Any]:
        """Run the networks and estimate the poses.

        Args:
            batch: the sample dict of :mod:`priordepth_core.data.sample`, collated (``image`` (B,3,H,W), ``context``
                (B,S,3,H,W), ``context_offsets`` (B,S), ``K`` (B,3,3)).
            step: optimiser step, for the pose-source warm-up.

        Returns:
            ``disp``/``depth``: lists over scales of (B,1,h,w); ``T_context_target`` (B,S,4,4); ``pose_valid`` (B,S)
            bool (the source's own pose is supported); ``pose_fallback`` (B,S) bool, present when the source has a
            fallback (``pose.fallback``, ``pnp_essential``): the pair is warped with the fallback's supported pose;
            ``pose_source`` str (its name); and when keypoints are used: ``keypoints`` (list over 1+S images of the
            selected keypoints), ``matches`` (per context: x_target, x_context (B,N,2), weights (B,N), inliers
            (B,N), num_inliers, pure_rotation (B,)), ``keypoint_dense`` (dense outputs of the target and contexts),
            ``homography`` and ``keypoint_dense_warped`` for homography adaptation.
        """
        image, context, K = batch["image"], batch["context"], batch["K"]
        B, S = context.shape[:2]
        offsets = batch["context_offsets"][0].tolist()
        depth_out = self.depth_net(image)
        outputs: dict[str, Any] = {"disp": depth_out["disp"], "depth": depth_out["depth"]}
        source = self.pose_schedule.at(step)
        outputs["pose_source"] = source.name

        posenet_T = None
        if self.pose_net is not None and (source.needs_posenet or self.config.pose.posenet_seed):
            posenet_T = torch.stack([self.pose_net.T_context_target(image, context[:, s], offsets[s])
                                     for s in range(S)], dim=1)  # (B, S, 4, 4)

        selected = None
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

        results, matches = [], []
        for s in range(S):
            problem = PoseProblem(K=K, depth_target=depth_out["depth"][0])
            if posenet_T is not None:
                problem.posenet_T_context_target = posenet_T[:, s]
                problem.init_T_context_target = posenet_T[:, s].detach()
            if source.needs_match_cache or (source.needs_matches and self.cached_matches):
                matches.append(self._cached_matches(problem, batch, s))
            elif source.needs_matches:
                matches.append(self._match_context(problem, selected, B, s))
            results.append(source.solve(problem))
        outputs["T_context_target"] = torch.stack([r.supported_pose() for r in results], dim=1)
        outputs["pose_valid"] = torch.stack([r.supported & ~r.fallback_used for r in results], dim=1)
        if source.has_fallback:
            outputs["pose_fallback"] = torch.stack([r.supported & r.fallback_used for r in results], dim=1)
        if any(r.depth_gradient is not None for r in results):
            outputs["pose_depth_gradient"] = torch.stack(
                [r.depth_gradient if r.depth_gradient is not None else torch.ones_like(r.valid) for r in results],
                dim=1)
        if source.needs_matches or source.needs_match_cache:
            for match, result in zip(matches, results):
                match.update(inliers=result.inliers, num_inliers=result.num_inliers,
                             pure_rotation=result.pure_rotation)
                if "triangulated_depth" in match and result.translation_scale is not None:
                    # The sparse prior's target: the native-resolution triangulation in the depth's scale.
                    match["triangulated_depth"] = match["triangulated_depth"] * result.translation_scale[:, None]
                elif "triangulated_depth" in match:  # unit baseline, no scale: the objective triangulates with T
                    del match["triangulated_depth"], match["parallax_deg"]
            outputs["matches"] = matches
        return outputs

    @staticmethod
    def _cached_matches(problem: PoseProblem, batch: dict[str, Any], s: int) -> dict[str, torch.Tensor]:
        """Context ``s``'s frozen matches and essential solve from the batch (the match cache) into ``problem``."""
        missing = [key for key in CACHED_MATCH_KEYS if key not in batch]
        if missing:
            raise ValueError(f"the pose source needs the match cache in the batch ({', '.join(missing)} missing): set "
                             "data.match_cache: true")
        problem.x_target = batch["match_x_target"][:, s]
        problem.x_context = batch["match_x_context"][:, s]
        problem.weights = batch["match_weight"][:, s]
        problem.essential_T_context_target = batch["essential_T_context_target"][:, s]
        problem.essential_status = batch["essential_status"][:, s]
        problem.triangulated_depth_target = batch["match_depth_target"][:, s]
        return {"x_target": problem.x_target, "x_context": problem.x_context, "weights": problem.weights,
                "triangulated_depth": problem.triangulated_depth_target,
                "parallax_deg": batch["match_parallax_deg"][:, s]}

    def _match_context(self, problem: PoseProblem, selected: dict[str, torch.Tensor], B: int,
                       s: int) -> dict[str, torch.Tensor]:
        """Match the target's keypoints to context ``s``'s and put the matches into ``problem``."""
        target_kp = self._slice(selected, slice(0, B))
        context_kp = self._slice(selected, slice(B * (1 + s), B * (2 + s)))
        match = match_descriptors(target_kp["descriptors"], context_kp["descriptors"], target_kp["valid"],
                                  context_kp["valid"])
        problem.x_target, problem.x_context, problem.weights = gather_matches(target_kp, context_kp, match)
        return {"x_target": problem.x_target, "x_context": problem.x_context, "weights": problem.weights}
