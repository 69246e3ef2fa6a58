"""Typed experiment configuration: dataclasses with a commented default for every field, read from YAML.

An experiment file is a small YAML override of these defaults (``config/train/*.yaml``); ``--set a.b=value`` on the
command line overrides further. Unknown keys are errors that name the key, so a typo never silently trains the
default.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

POSE_SOURCES = ("posenet", "essential", "pnp")
DATA_KINDS = ("suite", "tum", "kitti_odometry", "kitti_raw", "rosbag")


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message names the key and the problem."""


@dataclass(frozen=True)
class Range:
    """The values a numeric config field accepts: ``low <= value <= high`` (strict where ``*_exclusive``).

    ``None`` leaves that side open. Declared next to each field (``ranged``) and checked at load time, so a value
    such as ``run.checkpoint_every=0`` is refused with its allowed range instead of failing later in the run.
    """

    low: float | None = None
    high: float | None = None
    low_exclusive: bool = False
    high_exclusive: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_exclusive else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_exclusive else value <= self.high)

    def __str__(self) -> str:
        above = f"{'>' if self.low_exclusive else '>='} {self.low}"
        below = f"{'<' if self.high_exclusive else '<='} {self.high}"
        if self.low is not None and self.high is not None:
            return f"{above} and {below}"
        return above if self.low is not None else below if self.high is not None else "finite"


def ranged(default: float, low: float | None, high: float | None, *, low_exclusive: bool = False,
           high_exclusive: bool = False) -> Any:
    """A dataclass field with ``default`` whose values must lie in the given :class:`Range`."""
    return field(default=default, metadata={"range": Range(low, high, low_exclusive, high_exclusive)})


@dataclass
class DataConfig:
    # Where frames come from: a named synthetic suite or a dataset on disk.
    kind: str = field(default="suite", metadata={"choices": DATA_KINDS})
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
    height: int = ranged(96, 32, 4096)
    width: int = ranged(320, 32, 4096)
    # Context frames relative to the target, as MonoDepth2's frame_ids (0 is the target and is implied).
    context_offsets: list[int] = field(default_factory=lambda: [-1, 1], metadata={"range": Range(-100, 100)})
    # MonoDepth2's training augmentation: colour jitter and horizontal flip (K and poses mirrored consistently).
    augment: bool = False
    # DataLoader worker processes (0 loads in the main process).
    num_workers: int = ranged(0, 0, 256)


@dataclass
class ModelConfig:
    # ResNet depth of the DepthNet and PoseNet encoders (18, 34 or 50).
    num_layers: int = field(default=18, metadata={"choices": (18, 34, 50)})
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
    # How T_context_target is obtained: posenet (MonoDepth2), essential or pnp (keypoints + geometric solver).
    source: str = field(default="posenet", metadata={"choices": POSE_SOURCES})
    # Keypoint-based sources start from this source for warmup_steps optimiser steps ("" = no warm-up).
    warmup_source: str = field(default="", metadata={"choices": ("", *POSE_SOURCES)})
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
    fallback: str = field(default="mask", metadata={"choices": ("mask", "posenet")})
    # pnp: lift the keypoints with a detached depth, so the photometric loss trains the DepthNet only through the
    # warp and not through the pose the depth itself produced (with the gradient through the pose, a wrong depth can
    # move the pose until the two agree; docs/experiments.md).
    detach_depth: bool = False


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
        _check_declared_limits(self)
        for key in ("height", "width"):
            value = getattr(self.data, key)
            if value % 32:
                raise ConfigError(f"data.{key} must be a positive multiple of 32, got {value}")
        if not self.data.context_offsets or 0 in self.data.context_offsets:
            raise ConfigError(f"data.context_offsets must be non-empty and exclude 0, got {self.data.context_offsets}")
        if self.model.keypoint_frozen and (not self.model.keypoint_init or self.loss.keypoint_weight > 0):
            raise ConfigError("model.keypoint_frozen needs model.keypoint_init and loss.keypoint_weight = 0 "
                              f"(got keypoint_init={self.model.keypoint_init!r}, "
                              f"keypoint_weight={self.loss.keypoint_weight})")
        if not self.model.min_depth < self.model.max_depth:
            raise ConfigError(f"model.min_depth ({self.model.min_depth}) must be below model.max_depth "
                              f"({self.model.max_depth})")
        if not self.run.eval_min_depth < self.run.eval_max_depth:
            raise ConfigError(f"run.eval_min_depth ({self.run.eval_min_depth}) must be below run.eval_max_depth "
                              f"({self.run.eval_max_depth})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_declared_limits(instance: Any, prefix: str = "") -> None:
    """Check every field against the ``range`` or ``choices`` in its metadata (list fields: each item)."""
    for spec in dataclasses.fields(instance):
        value = getattr(instance, spec.name)
        name = f"{prefix}{spec.name}"
        if dataclasses.is_dataclass(value):
            _check_declared_limits(value, f"{name}.")
            continue
        allowed = spec.metadata.get("range")
        choices = spec.metadata.get("choices")
        for item in value if isinstance(value, list) else [value]:
            if allowed is not None and item not in allowed:
                raise ConfigError(f"config value {name} must be {allowed}, got {value!r}")
            if choices is not None and item not in choices:
                raise ConfigError(f"config value {name} must be one of {list(choices)}, got {value!r}")


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of the config tree, sections included (``optim``, ``optim.lr``, ...)."""
    keys = []
    for spec in dataclasses.fields(cls):
        keys.append(f"{prefix}{spec.name}")
        section = typing.get_type_hints(cls)[spec.name]
        if dataclasses.is_dataclass(section):
            keys += _all_keys(section, f"{prefix}{spec.name}.")
    return keys


def _unknown_key_error(full: str, known_here: set[str]) -> ConfigError:
    close = difflib.get_close_matches(full, _all_keys(ExperimentConfig), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"known here: {', '.join(sorted(known_here))}"
    return ConfigError(f"unknown config key '{full}'; {hint}")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a field's annotation; ints are accepted where floats are expected."""
    origin = typing.get_origin(annotation)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key '{key}' expects a list, got {value!r}")
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}' has an unsupported value {value!r}")
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "2e-4" (no dot) as a string
        except ValueError:
            raise ConfigError(f"config key '{key}' expects float, got {value!r}") from None
    if annotation is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # sequence ids such as 09 arrive as numbers from YAML
    if annotation in (int, float, str, bool) and not (isinstance(value, annotation)
                                                    and not (annotation is int and isinstance(value, bool))):
        raise ConfigError(f"config key '{key}' expects {annotation.__name__}, got {value!r}")
    return value


def _merge(instance: Any, updates: dict[str, Any], prefix: str = "") -> Any:
    if not isinstance(updates, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {updates!r}")
    hints = typing.get_type_hints(type(instance))
    names = {f.name for f in dataclasses.fields(instance)}
    changes = {}
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise _unknown_key_error(full, names)
        current = getattr(instance, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _merge(current, value, f"{full}.")
        else:
            changes[key] = _coerce(value, hints[key], full)
    return dataclasses.replace(instance, **changes)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from defaults, an optional YAML file and ``key=value`` overrides.

    Raises:
        ConfigError: unknown key, wrong value type, unreadable file, or a value no run can use.
    """
    config = ExperimentConfig()
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        try:
            config = _merge(config, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    config = apply_overrides(config, overrides or [])
    config.validate()
    return config


def apply_overrides(config: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """A copy of ``config`` with ``section.key=value`` overrides applied (values parsed as YAML)."""
    for text in overrides:
        keys, value = _parse_override(text)
        nested: Any = value
        for key in reversed(keys):
            nested = {key: nested}
        config = _merge(config, nested)
    return config


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Rebuild a config saved with a checkpoint (``ExperimentConfig.to_dict``)."""
    config = _merge(ExperimentConfig(), data)
    config.validate()
    return config


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(json.dumps(config.to_dict(), indent=2))
