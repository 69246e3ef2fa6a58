"""``priordepth-train-bag``: train the depth model on your own camera's recording, in one command.

    python -m priordepth_core.train.from_bag robot.mcap --out runs/my_robot
    python -m priordepth_core.train.from_bag robot_bag/ --out runs/my_robot --image-topic /cam/image_raw \\
        --camera-info-topic /cam/camera_info --max-steps 3000
    python -m priordepth_core.train.from_bag walk.mp4 --calibration camera.yaml --out runs/walk --kind handheld
    python -m priordepth_core.train.from_bag runs/my_robot_bag --out runs/my_robot --resume   # after Ctrl-C

Input: a rosbag2 (folder with ``metadata.yaml``, ``.mcap`` or ``.db3``: an Image/CompressedImage topic and its
CameraInfo), or an image folder or a video file with a ROS ``camera_calibration`` YAML (``--calibration``). Lens
distortion (plumb_bob, rational_polynomial, equidistant) is removed by the readers
(:mod:`priordepth_core.geometry.distortion`); the networks see rectified images with the rectified K.

Steps: (1) check the data: enough frames, intrinsics present and plausible, exposure, texture, and camera motion
and parallax measured with OpenCV's corner tracker (:func:`check_recording`); a failed check prints what is wrong and
what to do and exits 2 before anything is written; (2) pick the suite defaults, driving (forward motion) or
handheld, from the measured motion unless ``--kind`` says; (3) train with the project's trainer starting from the
shipped model's DepthNet, with a progress bar and ETA, TensorBoard logs in ``OUT/train/tensorboard``; Ctrl-C
(SIGINT/SIGTERM) saves ``OUT/train/last.pt`` and exits 130/143, and ``--resume`` continues; (4) pack ``OUT/model.pt``
(what the node's ``model:=`` and the offline runner's ``--checkpoint`` load); (5) run the offline runner on the
recording with it and write ``OUT/report.md`` with the data summary, the checks, the learning curve, depth and
trajectory pictures and what to try if it went badly.

Outputs appear whole or not at all: ``model.pt`` and ``report/`` are written under temporary names and renamed when
complete; a run that fails before training starts leaves no ``OUT``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import matplotlib
import numpy as np
import torch
import yaml
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ..atomic_output import atomic_output, interrupt_on_sigterm, interruption_signal
from ..config_schema import ConfigError, apply_overrides, merge
from ..data import DatasetError, FrameReader, RosbagReader, TumRgbdReader
from ..data.rosbag import CAMERA_INFO_TYPE, IMAGE_TYPES
from ..geometry.distortion import LensDistortion, Undistorter
from ..inference.model_file import (
    PACKED_MODEL,
    build_depth_net,
    load_inference_model,
    model_path,
    pack_inference_model,
    read_model_file,
)
from .checkpoint import LAST_CHECKPOINT
from .config import ExperimentConfig
from .trainer import Trainer, TrainingStopped

matplotlib.use("Agg")  # figures are written to files; no display
import matplotlib.pyplot as plt

log = logging.getLogger(__name__)

ROSBAG_SUFFIXES = (".mcap", ".db3")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
KINDS = ("driving", "handheld")

# The pose source every run of this command trains with, behind one name so that it changes in one place: the
# essential-anchored source on the frozen SIFT match cache (built once beside the data, or in
# ~/.cache/priordepth/match_cache for a bag), with the depth gauge that holds the depth's global scale (without it
# the scale drifts to min_depth, docs/experiments.md). The sparse prior's weight is per kind (KIND_DEFAULTS).
DEFAULT_POSE_OVERRIDES: dict[str, Any] = {"pose": {"source": "priordepth"},
                                          "data": {"match_cache": True, "keypoints": "sift"},
                                          "loss": {"min_parallax_deg": 0.5, "depth_gauge_weight": 0.01}}

# The suite defaults per kind of motion (config/train/synthetic_driving.yaml and synthetic_handheld.yaml), as
# overrides of ExperimentConfig; the network size follows the camera's aspect ratio (network_size()).
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    # Context frames chosen by parallax as in config/train/runs/<kind>_priordepth.yaml: handheld neighbours move
    # less than a pixel, so they may be up to 6 frames apart. The triangulated sparse prior is off for driving, where
    # it measured worse (test abs_rel 0.253 with it, 0.230 without; docs/experiments.md).
    "driving": {"model": {"num_layers": 18, "lite": True, "min_depth": 0.1, "max_depth": 100.0},
                "data": {"max_context_offset": 3, "min_context_parallax_px": 2.0},
                "loss": {"sparse_prior_weight": 0.0},
                "optim": {"lr": 1e-4, "batch_size": 8, "epochs": 12, "lr_step_epochs": 9},
                "run": {"eval_max_depth": 80.0}},
    "handheld": {"model": {"num_layers": 18, "lite": True, "min_depth": 0.1, "max_depth": 20.0},
                 "data": {"max_context_offset": 6, "min_context_parallax_px": 1.5},
                 "loss": {"sparse_prior_weight": 0.1},
                 "optim": {"lr": 1e-4, "batch_size": 8, "epochs": 20, "lr_step_epochs": 15},
                 "run": {"eval_max_depth": 20.0}},
}
# The shipped model each kind starts from (SHIPPED_MODELS names): both are PriorDepth-trained ResNet-18 lite
# DepthNets (fully convolutional, so any input size fits).
START_MODEL = {"driving": "driving", "handheld": "indoor"}
NETWORK_WIDTH = 320

# Data checks. Flow is measured in pixels of the image scaled to 640 wide, so thresholds hold for any resolution.
MIN_FRAMES = 10  # one batch of 8 targets with a context frame on either side
FEW_FRAMES = 300  # fewer trains, but overfits: a warning
REFERENCE_WIDTH = 640.0
STATIC_FLOW_PX = 1.0  # median frame-to-frame motion below this: the camera stands still
FAST_FLOW_PX = 60.0  # above: little overlap between frames, blur; a warning
MIN_TRACKS = 8  # corners tracked per pair below this: motion cannot be measured (no texture)
LOW_PARALLAX_PX = 0.3  # residual to the best homography below this: rotation only or a flat scene; a warning
RADIAL_DRIVING = 0.5  # flow pointing away from the image centre this consistently: forward (driving) motion
DARK_MEAN, BRIGHT_MEAN = 20.0, 235.0
CLIPPED_FRACTION = 0.4
MIN_FOV_DEG, MAX_FOV_DEG = 15.0, 170.0
CHECK_PAIRS = 40  # frame pairs sampled for the motion checks


class RecordingError(ValueError):
    """The recording cannot train a model: the text says what is wrong and what to do."""


@dataclass
class Check:
    """One data check: its name, the measured value in words, whether it passed, and what to do when it did not."""

    name: str
    value: str
    passed: bool
    advice: str = ""
    warning: bool = False  # a failed warning does not stop the run

    def __post_init__(self) -> None:
        self.passed = bool(self.passed)  # numpy comparisons give numpy booleans, which JSON refuses


@dataclass
class RecordingSummary:
    """What the checks measured."""

    source: str
    frames: int
    size_hw: tuple[int, int]
    K: np.ndarray
    lens: str
    valid_fraction: float
    checks: list[Check] = field(default_factory=list)
    median_flow_px: float = 0.0
    radial_coherence: float = 0.0
    parallax_px: float = 0.0
    kind: str = ""
    kind_reason: str = ""

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and not c.warning]


# ---------------------------------------------------------------------------------------------------- inputs
def is_rosbag(path: Path) -> bool:
    return (path.is_file() and path.suffix in ROSBAG_SUFFIXES) or (path / "metadata.yaml").is_file()


def bag_topics(path: Path) -> dict[str, str]:
    """topic -> message type of a rosbag2."""
    try:
        with AnyReader([path], default_typestore=get_typestore(Stores.LATEST)) as reader:
            return {c.topic: c.msgtype for c in reader.connections}
    except Exception as error:  # rosbags raises several unrelated types for unreadable bags
        raise RecordingError(f"{path}: cannot open rosbag2 ({error})") from error


def choose_topics(path: Path, image_topic: str | None, camera_info_topic: str | None) -> tuple[str, str]:
    """The image topic (given, or the only image topic not carrying depth) and its CameraInfo (given, or the one in
    the image topic's namespace, or the only one)."""
    topics = bag_topics(path)
    listing = ", ".join(f"{t} ({m})" for t, m in sorted(topics.items())) or "none"
    if image_topic is None:
        images = [t for t, m in topics.items() if m in IMAGE_TYPES and "depth" not in t]
        if len(images) != 1:
            raise RecordingError(f"{path}: {'no' if not images else 'several'} image topics; name one with "
                                 f"--image-topic (topics: {listing})")
        image_topic = images[0]
    if camera_info_topic is None:
        infos = [t for t, m in topics.items() if m == CAMERA_INFO_TYPE]
        base = image_topic.removesuffix("/compressed")
        beside = f"{base.rsplit('/', 1)[0]}/camera_info"
        if beside in infos:
            camera_info_topic = beside
        elif len(infos) == 1:
            camera_info_topic = infos[0]
        else:
            raise RecordingError(f"{path}: no CameraInfo topic for {image_topic!r} (topics: {listing}); the camera "
                                 "must be calibrated: record its camera_info, or name it with --camera-info-topic")
    return image_topic, camera_info_topic


def read_calibration(path: Path) -> tuple[np.ndarray, LensDistortion | None, np.ndarray | None, tuple[int, int]]:
    """K, distortion, rectified K (from P, or None) and (height, width) of a ROS camera_calibration YAML."""
    try:
        data = yaml.safe_load(path.read_text())
        K = np.asarray(data["camera_matrix"]["data"], dtype=np.float64).reshape(3, 3)
        size_hw = (int(data["image_height"]), int(data["image_width"]))
        coefficients = (data.get("distortion_coefficients") or {}).get("data") or []
        lens = LensDistortion.from_camera_info(data.get("distortion_model", "plumb_bob"), coefficients)
        projection = data.get("projection_matrix")
        P = None
        if projection:
            P = np.asarray(projection["data"], dtype=np.float64).reshape(3, 4)[:, :3]
            P = P if P[0, 0] > 0 and P[1, 1] > 0 else None
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        raise RecordingError(f"{path}: not a readable ROS camera_calibration YAML (image_width, image_height, "
                             f"camera_matrix, distortion_model, distortion_coefficients): {error}") from error
    return K, lens, P, size_hw


def _video_frames(path: Path, fps: float | None):
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise RecordingError(f"{path}: OpenCV cannot open this video")
    rate = fps or capture.get(cv2.CAP_PROP_FPS) or 30.0
    index = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            yield index / rate, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def _folder_frames(path: Path, fps: float | None):
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for index, file in enumerate(files):
        bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RecordingError(f"{file}: cannot decode image")
        yield index / (fps or 30.0), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def extract_frames(source: Path, calibration: Path, folder: Path, fps: float | None = None) -> Path:
    """An image folder or video with its calibration -> a rectified TUM-layout sequence in ``folder``."""
    K, lens, P, size_hw = read_calibration(calibration)
    undistorter = Undistorter(K, lens, size_hw, P)
    frames = _video_frames(source, fps) if source.is_file() else _folder_frames(source, fps)
    (folder / "rgb").mkdir(parents=True)
    lines = []
    for stamp, rgb in frames:
        if rgb.shape[:2] != size_hw:
            raise RecordingError(f"{source}: frame {len(lines)} is {rgb.shape[1]}x{rgb.shape[0]} but {calibration} "
                                 f"calibrates {size_hw[1]}x{size_hw[0]}")
        name = f"rgb/{len(lines):06d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(undistorter.rectify_image(rgb), cv2.COLOR_RGB2BGR))
        lines.append(f"{stamp:.6f} {name}")
    if not lines:
        raise RecordingError(f"{source}: no frames")
    (folder / "rgb.txt").write_text("# timestamp filename\n" + "\n".join(lines) + "\n")
    Kr = undistorter.rectified_K
    (folder / "intrinsics.txt").write_text(f"# fx fy cx cy width height (rectified from {calibration.name})\n"
                                           f"{Kr[0, 0]!r} {Kr[1, 1]!r} {Kr[0, 2]!r} {Kr[1, 2]!r} "
                                           f"{size_hw[1]} {size_hw[0]}\n")
    return folder


# ---------------------------------------------------------------------------------------------------- checks
def _pair_motion(first: np.ndarray, second: np.ndarray, K: np.ndarray, scale: float):
    """(median flow px, radial coherence, homography residual px, tracks) of two RGB frames, in reference pixels."""
    grey1, grey2 = (cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (first, second))
    corners = cv2.goodFeaturesToTrack(grey1, maxCorners=300, qualityLevel=0.01, minDistance=5)
    if corners is None or len(corners) < MIN_TRACKS:
        return None
    tracked, status, _ = cv2.calcOpticalFlowPyrLK(grey1, grey2, corners, None, winSize=(15, 15), maxLevel=3)
    back, back_status, _ = cv2.calcOpticalFlowPyrLK(grey2, grey1, tracked, None, winSize=(15, 15), maxLevel=3)
    # Forward-backward consistency drops wrong tracks (occlusions, repeated texture).
    good = (status.ravel() == 1) & (back_status.ravel() == 1) & (np.linalg.norm(back - corners, axis=2).ravel() < 0.5)
    if good.sum() < MIN_TRACKS:
        return None
    p1, p2 = corners[good, 0].astype(np.float64), tracked[good, 0].astype(np.float64)
    flow = p2 - p1
    magnitude = np.linalg.norm(flow, axis=1)
    outward = p1 - K[:2, 2]
    moving = magnitude > 1e-3
    cosine = np.sum(flow * outward, axis=1) / (magnitude * np.linalg.norm(outward, axis=1) + 1e-9)
    radial = float(np.median(cosine[moving])) if moving.sum() >= MIN_TRACKS else 0.0
    residual = 0.0
    if len(p1) >= 8:
        H, _ = cv2.findHomography(p1, p2, cv2.RANSAC, 1.0)
        if H is not None:
            mapped = cv2.perspectiveTransform(p1[:, None, :], H)[:, 0]
            residual = float(np.median(np.linalg.norm(mapped - p2, axis=1)))
    return float(np.median(magnitude)) * scale, radial, residual * scale, int(good.sum())


def check_recording(reader: FrameReader, source: str, pair_count: int = CHECK_PAIRS) -> RecordingSummary:
    """Measure what decides whether a recording can train: frames, intrinsics, exposure, texture, motion, parallax.

    Motion is measured on up to ``pair_count`` pairs of consecutive frames spread over the recording: corners tracked
    forward and backward (OpenCV pyramidal Lucas-Kanade), the median flow, how consistently it points away from the
    image centre (forward motion), and the median residual to the best homography (parallax: zero for a pure
    rotation or a flat scene).
    """
    frames = reader.sequences[0] if reader.sequences else []
    if not frames:
        raise RecordingError(f"{source}: no frames")
    first = reader.load_rgb(frames[0])
    height, width = first.shape[:2]
    K = np.asarray(frames[0].K, dtype=np.float64)
    undistorter = reader.undistorter_of(frames[0])
    lens = "rectified pinhole"
    valid_fraction = 1.0
    if undistorter is not None:
        lens = f"{undistorter.distortion.model} {list(undistorter.distortion.coefficients)} (removed)"
        valid_fraction = undistorter.valid_fraction
    summary = RecordingSummary(source, len(frames), (height, width), K, lens, valid_fraction)
    checks = summary.checks

    checks.append(Check("frames", f"{len(frames)}", len(frames) >= MIN_FRAMES,
                        f"at least {MIN_FRAMES} frames are needed; record longer (a minute at 10-30 Hz trains well)"))
    if len(frames) >= MIN_FRAMES:
        checks.append(Check("enough frames", f"{len(frames)} (>= {FEW_FRAMES} advised)", len(frames) >= FEW_FRAMES,
                            "few frames overfit: record a minute or more of varied motion", warning=True))

    fov = math.degrees(2 * math.atan(width / (2 * K[0, 0])))
    plausible = (MIN_FOV_DEG <= fov <= MAX_FOV_DEG and 0.5 < K[0, 0] / K[1, 1] < 2.0
                 and 0.2 * width < K[0, 2] < 0.8 * width and 0.2 * height < K[1, 2] < 0.8 * height)
    checks.append(Check("intrinsics", f"fx {K[0, 0]:.1f} fy {K[1, 1]:.1f} cx {K[0, 2]:.1f} cy {K[1, 2]:.1f}, "
                        f"horizontal field of view {fov:.0f} deg", plausible,
                        f"K does not look like a calibration of a {width}x{height} camera (field of view "
                        f"{MIN_FOV_DEG:.0f}-{MAX_FOV_DEG:.0f} deg, principal point near the centre, fx ~ fy): "
                        "calibrate with ros2 run camera_calibration cameracalibrator and record camera_info"))
    if valid_fraction < 0.9:
        checks.append(Check("rectified coverage", f"{valid_fraction:.0%} of rectified pixels see the image",
                            False, "the rectified camera (CameraInfo P) reaches beyond the lens's image; "
                            "recalibrate with a smaller alpha", warning=True))

    sample = np.unique(np.linspace(0, len(frames) - 1, min(20, len(frames))).astype(int))
    means, clipped = [], []
    for i in sample:
        grey = cv2.cvtColor(reader.load_rgb(frames[i]), cv2.COLOR_RGB2GRAY)
        means.append(float(grey.mean()))
        clipped.append(float(np.mean((grey <= 5) | (grey >= 250))))
    mean, clip = float(np.median(means)), float(np.median(clipped))
    checks.append(Check("exposure", f"median brightness {mean:.0f}/255, {clip:.0%} of pixels clipped",
                        DARK_MEAN <= mean <= BRIGHT_MEAN and clip <= CLIPPED_FRACTION,
                        "the images are too dark, too bright or clipped: fix the camera's exposure (auto-exposure "
                        "on, or a longer/shorter exposure time) and record again"))

    if len(frames) >= 2:
        starts = np.unique(np.linspace(0, len(frames) - 2, min(pair_count, len(frames) - 1)).astype(int))
        scale = REFERENCE_WIDTH / width
        measured = [m for m in (_pair_motion(reader.load_rgb(frames[i]), reader.load_rgb(frames[i + 1]), K, scale)
                                for i in starts) if m is not None]
        checks.append(Check("texture", f"corners tracked in {len(measured)} of {len(starts)} frame pairs",
                            len(measured) >= max(1, len(starts) // 2),
                            "too little texture to track: point the camera at a scene with visible structure, "
                            "light it, and avoid motion blur"))
        if measured:
            flows, radials, residuals, _ = (np.array(v) for v in zip(*measured))
            summary.median_flow_px = float(np.median(flows))
            summary.radial_coherence = float(np.median(radials))
            summary.parallax_px = float(np.median(residuals))
            checks.append(Check("motion", f"median {summary.median_flow_px:.2f} px per frame (at 640 px wide)",
                                summary.median_flow_px >= STATIC_FLOW_PX,
                                "the camera barely moves: depth is learned from motion, so move the camera "
                                "(walk, drive) while recording; a static camera cannot train"))
            if summary.median_flow_px >= STATIC_FLOW_PX:
                checks.append(Check("speed", f"median {summary.median_flow_px:.1f} px per frame",
                                    summary.median_flow_px <= FAST_FLOW_PX,
                                    "frames overlap little (fast motion or a low frame rate): record at a higher "
                                    "rate or move slower", warning=True))
                checks.append(Check("parallax", f"median {summary.parallax_px:.2f} px off the best homography",
                                    summary.parallax_px >= LOW_PARALLAX_PX,
                                    "the camera mostly rotates or looks at a flat scene: translate it (walk, "
                                    "drive) past objects at different distances", warning=True))
    return summary


def choose_kind(summary: RecordingSummary, kind: str | None) -> None:
    """Driving (forward motion: flow pointing away from the centre) or handheld, unless ``kind`` is given."""
    if kind is not None:
        summary.kind, summary.kind_reason = kind, "chosen with --kind"
    elif summary.radial_coherence >= RADIAL_DRIVING:
        summary.kind = "driving"
        summary.kind_reason = (f"flow points away from the image centre (median cosine {summary.radial_coherence:.2f}"
                               f" >= {RADIAL_DRIVING}): forward motion")
    else:
        summary.kind = "handheld"
        summary.kind_reason = (f"flow is not mainly outward (median cosine {summary.radial_coherence:.2f} < "
                               f"{RADIAL_DRIVING}): free camera motion")


# ---------------------------------------------------------------------------------------------------- training
def network_size(size_hw: tuple[int, int], width: int = NETWORK_WIDTH) -> tuple[int, int]:
    """(height, width) of the network input: ``width`` wide, the camera's aspect, multiples of 32, at least 64."""
    height = max(64, round(width * size_hw[0] / size_hw[1] / 32.0) * 32)
    return height, width


def experiment_config(data: dict[str, Any], kind: str, size_hw: tuple[int, int], out_dir: Path, frames: int,
                      max_steps: int, overrides: list[str]) -> ExperimentConfig:
    """The run's config: the kind's suite defaults, the pose source of :data:`DEFAULT_POSE_OVERRIDES`, the data,
    and the user's ``--set`` overrides last."""
    height, width = size_hw
    batch = min(KIND_DEFAULTS[kind]["optim"]["batch_size"], max(1, frames - 2))
    steps = max_steps or (frames - 2) // batch * KIND_DEFAULTS[kind]["optim"]["epochs"]
    layers = [KIND_DEFAULTS[kind], DEFAULT_POSE_OVERRIDES, {
        "name": out_dir.parent.name or "from_bag",
        "data": {**data, "height": height, "width": width},
        "optim": {"batch_size": batch, "max_steps": max_steps},
        # A learning curve of about 50 points whatever the length; checkpoints for Ctrl-C at least every 250 steps.
        "run": {"out_dir": str(out_dir), "log_every": max(1, min(20, steps // 50)), "checkpoint_every": 250,
                "image_every": max(1, min(250, steps // 4)), "eval_each_epoch": False},
    }]
    merged: dict[str, Any] = {}
    for layer in layers:
        _deep_update(merged, layer)
    config = apply_overrides(merge(ExperimentConfig(), merged), overrides)
    config.validate()
    return config


def _deep_update(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict):
            _deep_update(target.setdefault(key, {}), value)
        else:
            target[key] = value


def start_from_shipped_model(trainer: Trainer, name: str) -> str:
    """Load the shipped model's DepthNet into the trainer's; returns what was done, in words.

    The shipped file holds the finest output head only; the coarser heads (used by the multi-scale loss) start
    fresh. A shipped model of another architecture is skipped with a note.
    """
    path = model_path(name)
    model_file = read_model_file(path)
    if model_file.kind != PACKED_MODEL:
        return f"not started from {path}: not a packed model"
    config = trainer.config.model
    shipped = model_file.state["depth_config"]
    if int(shipped["num_layers"]) != config.num_layers or bool(shipped["lite"]) != config.lite:
        return (f"not started from {path.name}: it is ResNet-{shipped['num_layers']} lite={shipped['lite']}, the "
                f"run ResNet-{config.num_layers} lite={config.lite}")
    build_depth_net(shipped)  # the shipped weights fit their own network (raises otherwise)
    weights = {k: v.float() for k, v in model_file.state["depth_net"].items()}
    result = trainer.model.depth_net.load_state_dict(weights, strict=False)
    fresh = [k for k in result.missing_keys if not k.startswith("decoder.dispconv.")]
    if fresh or result.unexpected_keys:
        raise ValueError(f"{path}: the shipped DepthNet does not fit (missing {fresh[:5]}, unexpected "
                         f"{result.unexpected_keys[:5]})")
    return f"DepthNet started from the shipped {name!r} model ({path.name})"


# ---------------------------------------------------------------------------------------------------- report
def learning_curve(tensorboard_dir: Path, out: Path) -> list[tuple[int, float]]:
    """Plot train/loss from the TensorBoard logs into ``out`` (PNG); returns the (step, loss) points."""
    accumulator = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    points = ([(e.step, e.value) for e in accumulator.Scalars("train/loss")]
              if "train/loss" in accumulator.Tags().get("scalars", []) else [])
    figure, axis = plt.subplots(figsize=(6, 3.2), dpi=100)
    if points:
        steps, losses = zip(*points)
        axis.plot(steps, losses, marker="." if len(points) < 30 else None)
    axis.set_xlabel("optimiser step")
    axis.set_ylabel("training loss")
    axis.set_title("learning curve (photometric + smoothness)")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return points


def run_offline(recording: str, model: Path, out: Path, image_topic: str | None, camera_info_topic: str | None,
                max_frames: int) -> dict[str, Any]:
    """The offline runner (``python -m priordepth_core.infer``) on the recording with the new model; its metrics."""
    command = [sys.executable, "-m", "priordepth_core.infer", "--input", recording, "--out", str(out),
               "--checkpoint", str(model), "--max-frames", str(max_frames), "--no-progress"]
    if image_topic:
        command += ["--image-topic", image_topic, "--camera-info-topic", camera_info_topic]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the offline runner failed on the new model: {done.stderr.strip()[-2000:]}")
    return json.loads((out / "metrics.json").read_text())


def what_to_try(summary: RecordingSummary, points: list[tuple[int, float]], steps: int) -> list[str]:
    advice = [f"- {c.name}: {c.advice}" for c in summary.checks if not c.passed]
    if len(points) >= 4:
        quarter = len(points) // 4
        head, tail = np.mean([v for _, v in points[:quarter]]), np.mean([v for _, v in points[-quarter:]])
        if tail >= head:
            advice.append(f"- the loss did not fall ({head:.4f} at the start, {tail:.4f} at the end): train longer "
                          "(--max-steps), or lower the learning rate (--set optim.lr=5e-5)")
    if steps < 1000:
        advice.append(f"- {steps} steps is a smoke run: a useful model needs thousands (one hour on a CPU core is "
                      "about 1000 steps at 320 px wide)")
    advice += [
        "- depth looks flat or noisy: record more motion with translation (walk past things, drive) and more frames",
        f"- wrong motion kind ({summary.kind}): pass --kind driving or --kind handheld",
        "- depth is wrong near the image border: check the calibration (lens distortion), see the rectified coverage",
        "- training diverged or the loss is NaN: --set optim.lr=5e-5 --set optim.grad_clip=1.0",
    ]
    return advice


def write_report(path: Path, summary: RecordingSummary, config: ExperimentConfig, start_note: str,
                 points: list[tuple[int, float]], metrics: dict[str, Any], elapsed_s: float, steps: int,
                 command: str) -> None:
    rows = "\n".join(f"| {c.name} | {c.value} | {'ok' if c.passed else ('warning' if c.warning else 'FAILED')} |"
                     for c in summary.checks)
    K = summary.K
    pose = metrics.get("pose", {})
    pose_text = (f"; against the recording's ground truth: ATE {pose['ate_rmse_m']:.4f} m (sim3) over "
                 f"{pose['path_length_m']:.2f} m" if "ate_rmse_m" in pose else "")
    loss_text = (f"{points[0][1]:.4f} at step {points[0][0]} -> {points[-1][1]:.4f} at step {points[-1][0]}"
                 if points else "no loss logged")
    text = f"""# PriorDepth on your camera: {summary.source}

Command: `{command}`

## Data

| | |
| --- | --- |
| recording | {summary.source} |
| frames | {summary.frames} |
| image | {summary.size_hw[1]}x{summary.size_hw[0]} |
| lens | {summary.lens} |
| rectified K | fx {K[0, 0]:.2f} fy {K[1, 1]:.2f} cx {K[0, 2]:.2f} cy {K[1, 2]:.2f} |
| motion | {summary.median_flow_px:.2f} px per frame (at 640 px wide), parallax {summary.parallax_px:.2f} px |
| kind | {summary.kind}: {summary.kind_reason} |

## Checks

| check | measured | result |
| --- | --- | --- |
{rows}

## Training

- network input {config.data.width}x{config.data.height}, ResNet-{config.model.num_layers} lite={config.model.lite},
  pose source {config.pose.source}, batch {config.optim.batch_size}, {steps} steps, lr {config.optim.lr}
- {start_note}
- loss {loss_text}; took {elapsed_s / 60:.1f} min on {torch.get_num_threads()} CPU thread(s)
  ({'CUDA' if torch.cuda.is_available() else 'no GPU'})
- TensorBoard: `tensorboard --logdir {Path(config.run.out_dir) / 'tensorboard'}`

![learning curve](report/learning_curve.png)

## Depth and trajectory (the offline runner with model.pt)

{metrics.get('frames', '?')} frames at {metrics.get('speed', {}).get('fps', float('nan')):.1f} FPS; tracking states
{json.dumps(metrics.get('tracking', {}))}{pose_text}.

![depth](report/run/overview.png)

![trajectory](report/run/trajectory.png)

## Use it

    ros2 launch priordepth_ros live.launch.py model:=$PWD/model.pt image:=<image topic> camera_info:=<its camera_info>
    python -m priordepth_core.infer --input <recording> --checkpoint model.pt --out <folder>

## If it went badly

""" + "\n".join(what_to_try(summary, points, steps)) + "\n"
    path.write_text(text)


# ---------------------------------------------------------------------------------------------------- command
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="priordepth-train-bag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recording", type=Path, help="rosbag2 (folder, .mcap, .db3), image folder or video file")
    parser.add_argument("--out", type=Path, required=True, help="output folder (model.pt, report.md, train/)")
    parser.add_argument("--image-topic", help="rosbag2: the image topic (default: the only one)")
    parser.add_argument("--camera-info-topic", help="rosbag2: its CameraInfo (default: <image namespace>/camera_info)")
    parser.add_argument("--calibration", type=Path, help="image folder / video: ROS camera_calibration YAML")
    parser.add_argument("--fps", type=float, help="image folder / video: frame rate (default: the video's, or 30)")
    parser.add_argument("--kind", choices=KINDS, help="suite defaults (default: from the measured motion)")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many optimiser steps (default: "
                                                                 "the kind's epochs)")
    parser.add_argument("--size", help="network input WIDTHxHEIGHT, multiples of 32 (default 320 wide)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one training config value, e.g. --set optim.lr=5e-5 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out (after Ctrl-C)")
    parser.add_argument("--no-start-model", action="store_true", help="train from scratch, not the shipped model")
    parser.add_argument("--report-frames", type=int, default=300, help="frames the report's runner uses (0 = all)")
    return parser


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RecordingError(f"--size must be WIDTHxHEIGHT like 320x192, got {text!r}") from None
    return height, width


def open_recording(args: argparse.Namespace, staging: Path) -> tuple[FrameReader, dict[str, Any], str]:
    """(reader, the config's data section, the recording the runner reads) of the command's input."""
    path = args.recording
    if not path.exists():
        raise RecordingError(f"{path}: does not exist")
    if is_rosbag(path):
        image_topic, info_topic = choose_topics(path, args.image_topic, args.camera_info_topic)
        args.image_topic, args.camera_info_topic = image_topic, info_topic
        reader = RosbagReader(path, image_topic, info_topic)
        data = {"kind": "rosbag", "path": str(path.resolve()), "image_topic": image_topic,
                "camera_info_topic": info_topic}
        return reader, data, str(path.resolve())
    if path.is_dir() and (path / "rgb.txt").is_file():
        return TumRgbdReader(path), {"kind": "tum", "path": str(path.resolve())}, str(path.resolve())
    if (path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES) or path.is_dir():
        if args.calibration is None:
            raise RecordingError(f"{path}: an image folder or video needs --calibration camera.yaml (ROS "
                                 "camera_calibration's output: ros2 run camera_calibration cameracalibrator)")
        frames = extract_frames(path, args.calibration, staging / "frames", args.fps)
        return TumRgbdReader(frames), {"kind": "tum", "path": "frames"}, "frames"
    raise RecordingError(f"{path}: not a rosbag2 (metadata.yaml, .mcap, .db3), an image folder or a video "
                         f"({', '.join(VIDEO_SUFFIXES)})")


def run(args: argparse.Namespace, command: str) -> int:
    out: Path = args.out
    if out.exists() and not args.resume:
        raise RecordingError(f"--out {out} exists: pass --resume to continue its run, or choose another folder")
    if args.resume and not (out / "train" / LAST_CHECKPOINT).exists():
        raise RecordingError(f"--resume: {out / 'train' / LAST_CHECKPOINT} does not exist; start without --resume")
    with tempfile.TemporaryDirectory(prefix="train-bag-") as scratch:
        reader, data, recording = open_recording(args, Path(scratch))
        print(f"checking {args.recording} ...", file=sys.stderr)
        summary = check_recording(reader, str(args.recording))
        for check in summary.checks:
            mark = "ok" if check.passed else ("warning" if check.warning else "FAILED")
            print(f"  {check.name:<18} {mark:<8} {check.value}", file=sys.stderr)
        if summary.failed:
            problems = "\n".join(f"  {c.name}: {c.advice}" for c in summary.failed)
            raise RecordingError(f"{args.recording} cannot train a model:\n{problems}")
        choose_kind(summary, args.kind)
        print(f"  kind               {summary.kind}: {summary.kind_reason}", file=sys.stderr)

        created = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
            if data["path"] == "frames":  # an extracted image folder or video lives with the run
                if not (out / "frames").exists():
                    shutil.move(str(Path(scratch) / "frames"), out / "frames")
                data["path"] = str((out / "frames").resolve())
                recording = data["path"]
            size = _parse_size(args.size) or network_size(summary.size_hw)
            config = experiment_config(data, summary.kind, size, out / "train", summary.frames, args.max_steps,
                                       args.overrides)
            started = time.perf_counter()
            trainer = Trainer(config, resume=args.resume)
            try:
                start_note = "resumed from train/last.pt" if args.resume else (
                    "trained from scratch (--no-start-model)" if args.no_start_model
                    else start_from_shipped_model(trainer, START_MODEL[summary.kind]))
                print(f"  start              {start_note}", file=sys.stderr)
                trainer.fit()
                trainer.save_checkpoint()
                steps = trainer.step
            finally:
                trainer.close()
            elapsed = time.perf_counter() - started
        except TrainingStopped:
            raise
        except BaseException:
            if created and not (out / "train" / LAST_CHECKPOINT).exists():
                shutil.rmtree(out, ignore_errors=True)  # nothing to resume: leave no half-made folder
            raise

    # A PoseNet run has no KeypointNet of its own: the packed model takes the shipped one for the node's matching.
    checkpoint = out / "train" / LAST_CHECKPOINT
    state_keys = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"].keys()
    keypoints = None if any(k.startswith("keypoint_net.") for k in state_keys) else model_path(
        START_MODEL[summary.kind])
    pack_inference_model(checkpoint, out / "model.pt", keypoints, note=command)
    load_inference_model(out / "model.pt")  # it must load as the node and the runner will load it
    with atomic_output(out / "report") as report:
        report.mkdir()
        points = learning_curve(out / "train" / "tensorboard", report / "learning_curve.png")
        metrics = run_offline(recording, out / "model.pt", report / "run", args.image_topic,
                              args.camera_info_topic, args.report_frames)
        (report / "checks.json").write_text(json.dumps(
            {"checks": [c.__dict__ for c in summary.checks], "kind": summary.kind, "kind_reason": summary.kind_reason,
             "median_flow_px": summary.median_flow_px, "parallax_px": summary.parallax_px,
             "radial_coherence": summary.radial_coherence, "frames": summary.frames, "train_seconds": elapsed,
             "steps": steps}, indent=2))
    with atomic_output(out / "report.md") as staged:
        write_report(staged, summary, config, start_note, points, metrics, elapsed, steps, command)
    print(f"wrote {out / 'model.pt'} and {out / 'report.md'} ({steps} steps in {elapsed / 60:.1f} min)")
    print(f"run it: ros2 launch priordepth_ros live.launch.py model:={(out / 'model.pt').resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    command = "priordepth-train-bag " + " ".join(argv)
    try:
        with interrupt_on_sigterm():
            return run(args, command)
    except TrainingStopped as stopped:
        print(f"{stopped}\n(priordepth-train-bag {args.recording} --out {args.out} --resume)", file=sys.stderr)
        return 128 + stopped.signum
    except KeyboardInterrupt as interruption:
        stopped_by = interruption_signal(interruption)
        print(f"interrupted by {stopped_by.name}", file=sys.stderr)
        return 128 + stopped_by
    except (RecordingError, DatasetError, ConfigError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
