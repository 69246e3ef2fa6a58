"""Typed experiment configuration: dataclasses with a commented default for every field, read from YAML.

An experiment file is a small YAML override of these defaults (``config/train/*.yaml``); ``--set a.b=value`` on the
command line overrides further. Unknown keys are errors that name the nearest valid key, so a typo never silently
trains the default. The reading, checking and overriding is :mod:`priordepth_core.config_schema`'s, shared with the
Pipeline's config and the ROS node's parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_schema import ConfigError, Range, check_fields, load, merge, one_of, ranged, to_dict
from ..data.match_cache import KEYPOINT_METHODS
from ..data.registry import READERS
from ..models.keypoint_net import DESCRIPTOR_HEADS
from ..pose import POSE_SOURCE_NAMES, SOURCES_NEEDING_MATCH_CACHE

# The dataset kinds are the readers registry's names: a reader registered there is accepted here too.
DATA_KINDS = tuple(READERS)


@dataclass
class DataConfig:
    # Where frames come from: a named synthetic suite or a dataset on disk.
    kind: str = one_of("suite", DATA_KINDS)
    # Synthetic suite name for kind=suite (driving, handheld, indoor-slow).
    suite: str = "driving"
    # Dataset root for tum / kitti_odometry / kitti_raw, or the rosbag2 path for kind=rosbag.
    path: str = ""
    # kitti_raw: the Eigen/Zhou split file listing training frames ("<date>/<drive> <frame> l|r").
    split_file: str = ""
    # kitti_raw: the split file of the evaluation frames.
    test_split_file: str = ""
    # kitti_odometry: sequence ids used for training / testing.
    train_sequences: list[str] = field(default_factory=lambda: ["00", "01", "02", "03", "04", "05", "06", "07", "08"])
    test_sequences: list[str] = field(default_factory=lambda: ["09", "10"])
    # rosbag: the image topic and its CameraInfo topic.
    image_topic: str = "/camera/image_raw"
    camera_info_topic: str = "/camera/camera_info"
    # Network input size (multiples of 32).
    height: int = ranged(96, 32, 4096, step=32)
    width: int = ranged(320, 32, 4096, step=32)
    # Context frames relative to the target, as MonoDepth2's frame_ids (0 is the target and is implied).
    context_offsets: list[int] = field(default_factory=lambda: [-1, 1], metadata={"range": Range(-100, 100)})
    # MonoDepth2's training augmentation: colour jitter and horizontal flip (K and poses mirrored consistently).
    augment: bool = False
    # DataLoader worker processes (0 loads in the main process).
    num_workers: int = ranged(0, 0, 256)
    # Frozen keypoint matches + essential poses per sequence at native resolution, built once beside the data
    # (priordepth_core/data/match_cache.py); the pose source priordepth needs it.
    match_cache: bool = False
    # Keypoints of the match cache (OpenCV, on the native-resolution frames).
    keypoints: str = one_of("sift", KEYPOINT_METHODS)
    # The match cache holds pairs up to this many frames apart (the context frames are chosen among them).
    max_context_offset: int = ranged(3, 1, 30)
    # Choose each context frame by parallax: the nearest on its side whose median rotation-compensated match
    # parallax reaches this many pixels at the network input size (0 = keep context_offsets). Needs match_cache.
    min_context_parallax_px: float = ranged(0.0, 0, None)
    # Matches per pair handed to the pose source (padded).
    max_matches: int = ranged(200, 8, 4096)
    # Where match caches are stored ("" = beside each sequence, or ~/.cache/priordepth/match_cache).
    match_cache_dir: str = ""


@dataclass
class ModelConfig:
    # ResNet depth of the DepthNet and PoseNet encoders (18, 34 or 50).
    num_layers: int = one_of(18, (18, 34, 50))
    # Half-width encoder/decoder for real-time CPU inference.
    lite: bool = False
    # Depth range of the sigmoid disparity output, in the depth network's units.
    min_depth: float = ranged(0.1, 0, None, low_exclusive=True)
    max_depth: float = ranged(100.0, 0, None, low_exclusive=True)
    # Optional torchvision-format ImageNet weights (a local file; nothing is downloaded).
    pretrained_path: str = ""
    # Keypoint descriptor dimension and the lite option for the KeypointNet.
    descriptor_dim: int = ranged(256, 1, 4096)
    keypoint_lite: bool = False
    # KeypointNet descriptor head: kp2d (KP2D's 3x3 convs, the shipped models) or light (1x1 + depthwise convs,
    # priordepth_core/models/keypoint_net.py); keypoint_init must have the same.
    keypoint_descriptor_head: str = one_of("kp2d", DESCRIPTOR_HEADS)
    # KeypointNet dropout. KP2D uses 0.2, but with it (and lr 1e-3) the descriptors collapsed to one vector within
    # ~100 steps in our short CPU runs (docs/keypoints.md); 0 kept them apart.
    keypoint_dropout: float = ranged(0.0, 0, 1, high_exclusive=True)
    # Start the KeypointNet from a homography-adaptation checkpoint of `python -m priordepth_core.train.keypoints`
    # (KP3D pretrains KP2D the same way); its descriptor_dim and lite must match the two fields above.
    keypoint_init: str = ""
    # Keep the KeypointNet fixed at keypoint_init (no gradients, BatchNorm in eval mode). Jointly trained keypoints can
    # drift to points that barely move between frames, which any depth explains (docs/experiments.md).
    keypoint_frozen: bool = False


@dataclass
class PoseConfig:
    # How T_context_target is obtained: posenet (MonoDepth2), essential, pnp or pnp_essential (keypoints + geometric
    # solver); the registry of priordepth_core.pose, shared with the Pipeline's pose_source.
    source: str = one_of("posenet", POSE_SOURCE_NAMES)
    # Keypoint-based sources start from this source for warmup_steps optimiser steps ("" = no warm-up).
    warmup_source: str = one_of("", ("", *POSE_SOURCE_NAMES))
    warmup_steps: int = ranged(0, 0, None)
    # Keypoints kept per image after NMS.
    top_k: int = ranged(300, 1, None)
    # RANSAC hypotheses per pair and inlier threshold in pixels (at the network input resolution).
    ransac_hypotheses: int = ranged(128, 1, None)
    ransac_threshold_px: float = ranged(1.0, 0, None, low_exclusive=True)
    # A pair with fewer inliers is treated as a failed solve: its photometric term is masked.
    min_inliers: int = ranged(20, 0, None)
    # Seed the robust solver with the PoseNet prediction when a PoseNet exists (hybrid mode).
    posenet_seed: bool = False
    # What a failed pair (invalid solve or < min_inliers) does: "mask" drops its photometric term; "posenet" uses the
    # PoseNet's pose for it (hybrid; a PoseNet is then built and keeps training on those pairs).
    fallback: str = one_of("mask", ("mask", "posenet"))
    # pnp: lift the keypoints with a detached depth, so the photometric loss trains the DepthNet only through the
    # warp and not through the pose the depth itself produced (with the gradient through the pose, a wrong depth can
    # move the pose until the two agree; docs/experiments.md).
    detach_depth: bool = False
    # Where sources that solve from matches (pnp, essential, pnp_essential) take them: "keypointnet" (the jointly
    # trained KeypointNet at the input resolution) or "cache" (the frozen native-resolution match cache; needs
    # data.match_cache), so that they can be compared with priordepth on the same correspondences.
    matches: str = one_of("keypointnet", ("keypointnet", "cache"))


@dataclass
class LossConfig:
    # SSIM weight in the photometric error (MonoDepth2: 0.85).
    ssim_alpha: float = ranged(0.85, 0, 1)
    # Edge-aware smoothness weight (scaled by 1 / 2^scale).
    smoothness_weight: float = ranged(1e-3, 0, None)
    # MonoDepth2 auto-masking of pixels that do not change between frames.
    automask: bool = True
    # Output scales used for the photometric loss (upsampled to the input resolution).
    scales: list[int] = field(default_factory=lambda: [0, 1, 2, 3], metadata={"range": Range(0, 3)})
    # KP2D keypoint losses (homography adaptation + multi-view) weight; 0 disables them.
    keypoint_weight: float = ranged(0.0, 0, None)
    # Sparse triangulated-depth prior weight; 0 disables it.
    sparse_prior_weight: float = ranged(0.0, 0, None)
    # Minimum parallax angle for a triangulated point to enter the sparse prior.
    min_parallax_deg: float = ranged(1.0, 0, 180, high_exclusive=True)
    # Weight of the depth gauge: (mean log predicted depth - log gauge depth)^2 per image. The priordepth losses
    # are invariant to the depth's global scale (the translation length follows it), so nothing held the scale and
    # it drifted until the DepthNet's disparity saturated at min_depth (docs/experiments.md); the gauge fixes the
    # scale without favouring any shape. 0 = off (PoseNet runs: the PoseNet's translation sets the scale).
    depth_gauge_weight: float = ranged(0.0, 0, None)
    # The gauge depth in the network's units (0 = the geometric mean of model.min_depth and model.max_depth, the
    # middle of the DepthNet's disparity range in log terms).
    depth_gauge: float = ranged(0.0, 0, None)


@dataclass
class OptimConfig:
    # Adam learning rate and batch size (MonoDepth2: 1e-4, 12).
    lr: float = ranged(1e-4, 0, None, low_exclusive=True)
    batch_size: int = ranged(12, 1, None)
    # Epochs over the training set; max_steps > 0 stops earlier at that many optimiser steps.
    epochs: int = ranged(20, 1, None)
    max_steps: int = ranged(0, 0, None)
    # Step decay of the learning rate: multiply by lr_gamma every lr_step_epochs epochs (MonoDepth2: 15, 0.1).
    lr_step_epochs: int = ranged(15, 1, None)
    lr_gamma: float = ranged(0.1, 0, 1, low_exclusive=True)
    weight_decay: float = ranged(0.0, 0, None)
    # Gradient clipping by global norm (0 = off).
    grad_clip: float = ranged(0.0, 0, None)


@dataclass
class RunConfig:
    # Output folder for checkpoints, TensorBoard logs and the resolved config.
    out_dir: str = "runs/default"
    # Seed of every random number generator (weights, data order, RANSAC).
    seed: int = ranged(0, 0, 2**32 - 1)
    # "auto" picks CUDA when present, else CPU; or "cpu", "cuda", "cuda:1".
    device: str = "auto"
    # Mixed precision and channels-last memory format on CUDA (ignored on CPU).
    amp: bool = True
    channels_last: bool = True
    # Checkpoint every N optimiser steps (and at each epoch end); scalars every log_every, images every image_every.
    checkpoint_every: int = ranged(500, 1, None)
    log_every: int = ranged(20, 1, None)
    image_every: int = ranged(250, 1, None)
    # Evaluate on the test split at each epoch end (depth abs_rel etc. into TensorBoard).
    eval_each_epoch: bool = True
    # Ground-truth depth range of that evaluation, metres (MonoDepth2 KITTI: 1e-3 .. 80), and a cap on its samples.
    eval_min_depth: float = ranged(1e-3, 0, None, low_exclusive=True)
    eval_max_depth: float = ranged(80.0, 0, None, low_exclusive=True)
    eval_max_samples: int = ranged(200, 0, None)
    # CPU threads used by PyTorch (0 = PyTorch's default).
    num_threads: int = ranged(0, 0, 1024)


@dataclass
class ExperimentConfig:
    # A short name, used in logs.
    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values no run can use: each field's declared range or choices first."""
        check_fields(self)
        if not self.data.context_offsets or 0 in self.data.context_offsets:
            raise ConfigError(f"data.context_offsets must be non-empty and exclude 0, got {self.data.context_offsets}")
        if self.model.keypoint_frozen and (not self.model.keypoint_init or self.loss.keypoint_weight > 0):
            raise ConfigError("model.keypoint_frozen needs model.keypoint_init and loss.keypoint_weight = 0 "
                              f"(got keypoint_init={self.model.keypoint_init!r}, "
                              f"keypoint_weight={self.loss.keypoint_weight})")
        if self.data.min_context_parallax_px > 0 and not self.data.match_cache:
            raise ConfigError("data.min_context_parallax_px > 0 chooses context frames from the match cache: set "
                              "data.match_cache: true")
        if (self.pose.source in SOURCES_NEEDING_MATCH_CACHE or self.pose.matches == "cache") and not \
                self.data.match_cache:
            raise ConfigError(f"pose.source {self.pose.source!r} with pose.matches {self.pose.matches!r} solves from "
                              "the frozen match cache: set data.match_cache: true")
        if not self.model.min_depth < self.model.max_depth:
            raise ConfigError(f"model.min_depth ({self.model.min_depth}) must be below model.max_depth "
                              f"({self.model.max_depth})")
        if not self.run.eval_min_depth < self.run.eval_max_depth:
            raise ConfigError(f"run.eval_min_depth ({self.run.eval_min_depth}) must be below run.eval_max_depth "
                              f"({self.run.eval_max_depth})")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from defaults, an optional YAML file and ``section.key=value`` overrides.

    Raises:
        ConfigError: unknown key, wrong value type, unreadable file, or a value no run can use.
    """
    return load(ExperimentConfig(), path, overrides or [])


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Rebuild a config saved with a checkpoint (``ExperimentConfig.to_dict``)."""
    config = merge(ExperimentConfig(), data)
    config.validate()
    return config


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(json.dumps(config.to_dict(), indent=2))
