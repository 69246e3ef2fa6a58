"""PipelineConfig: every knob of the streaming pipeline, with its default, its allowed values and why.

Read from YAML with ``key=value`` overrides (:func:`load_pipeline_config`, ``python -m priordepth_core.infer
--config FILE --set key=value``), and mapped one to one onto the ROS node's parameters (names, defaults, ranges and
these comments as descriptions): defaults and limits live here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config_schema import ConfigError, check_fields, load, merge, one_of, ranged
from ..models.depth_net import INPUT_MULTIPLE
from ..pose import POSE_SOURCE_NAMES, SOURCES_NEEDING_MATCH_CACHE

# The Pipeline solves from live matches; sources that read a training match cache are not among its choices.
PIPELINE_POSE_SOURCES = tuple(name for name in POSE_SOURCE_NAMES if name not in SOURCES_NEEDING_MATCH_CACHE)

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
SCALE_MODES = ("relative", "camera_height")
LOST_MOTIONS = ("hold", "constant_velocity")
PRECISIONS = ("auto", "fp32", "fp16", "int8", "int8_keypoints")
BACKEND_PRECISIONS = {"torch": ("fp32", "fp16"), "onnxruntime": ("fp32", "int8", "int8_keypoints"),
                      "openvino": ("fp32", "int8", "int8_keypoints"), "tensorrt": ("fp16", "fp32")}
# What "auto" picks (benchmarks/pipeline.py): INT8 where it passes parity on the CPU, FP16 on TensorRT.
AUTO_PRECISION = {"torch": "fp32", "onnxruntime": "int8", "openvino": "int8", "tensorrt": "fp16"}


def resolve_precision(backend: str, precision: str, device: str = "cpu") -> str:
    """``precision`` for ``backend``, with "auto" = the fastest measured one that passes parity: INT8 for OpenVINO
    and ONNX Runtime on the CPU, FP16 for TensorRT, FP32 for PyTorch (the reference).

    Raises:
        ValueError: an unknown backend, or a precision the backend does not run.
    """
    if backend not in BACKEND_PRECISIONS:
        raise ValueError(f"unknown backend {backend!r}; choose {', '.join(BACKEND_PRECISIONS)}")
    allowed = BACKEND_PRECISIONS[backend]
    if precision == "auto":
        return "fp32" if backend == "onnxruntime" and device != "cpu" else AUTO_PRECISION[backend]
    if precision not in allowed:
        raise ValueError(f"backend {backend!r} runs precision {' or '.join(allowed)} (or auto), not {precision!r}")
    return precision


# DepthNet's stride-32 features must be at least 2 pixels a side for its reflection padding.
MIN_INPUT_SIZE = 2 * INPUT_MULTIPLE


@dataclass
class PipelineConfig:
    # Network runtime: "openvino" (CPU; the fastest measured here, INT8), "onnxruntime" (CPU INT8/FP32, or CUDA with
    # onnxruntime-gpu), "tensorrt" (torch-tensorrt, CUDA only) or "torch" (the reference; what training runs).
    backend: str = one_of("openvino", BACKENDS)
    # "cpu", "cuda" or "cuda:N" for the networks and the pose solve.
    device: str = "cpu"
    # Network input height; 0 = the checkpoint's training size. A multiple of 32 (DepthNet's strides), >= 64.
    input_height: int = ranged(0, 0, 4096, step=INPUT_MULTIPLE)
    # Network input width; 0 = the checkpoint's training size. A multiple of 32, >= 64.
    input_width: int = ranged(0, 0, 8192, step=INPUT_MULTIPLE)
    # "relative": depth and translation in the network's own (arbitrary, roughly consistent) scale.
    # "camera_height": metric, from the camera's known height above a ground plane seen in the lower image.
    scale_mode: str = one_of("relative", SCALE_MODES)
    # Height of the optical centre above the ground in metres, for scale_mode "camera_height" (KITTI: 1.65).
    camera_height_m: float = ranged(1.65, 0.01, 100.0)
    # How the pose between frames is found, by the name the trainer's pose.source uses (priordepth_core.pose):
    # "pnp_essential" = PnP on the reference's lifted keypoints, the essential matrix where PnP finds too few inliers.
    pose_source: str = one_of("pnp_essential", PIPELINE_POSE_SOURCES)
    # Keypoints kept per frame (the best-scoring KeypointNet cells).
    max_keypoints: int = ranged(512, 8, 16384)
    # Pose from fewer inliers than this is "degraded"; from fewer than half of it, tracking is "lost".
    min_inliers: int = ranged(20, 6, 10000)
    # Most hypotheses of the PnP RANSAC (it stops earlier once confident). 64 give 99.9 % confidence of one
    # all-inlier 6-point sample at a 68 % inlier ratio; samples are drawn by match confidence, which favours inliers.
    ransac_hypotheses: int = ranged(64, 1, 100000)
    # Inlier threshold of the PnP RANSAC in network-input pixels (the shipped KeypointNet localises to ~1 px).
    ransac_threshold_px: float = ranged(2.0, 0.01, 100.0)
    # Lowe's ratio test of the descriptor matcher (mutual nearest neighbours are always required).
    match_ratio: float = ranged(0.9, 0.01, 1.0)
    # A frame whose sharpness (variance of the Laplacian) falls below this fraction of the running median of
    # recent frames is "blurred": its pose is reported as degraded.
    blur_ratio: float = ranged(0.35, 0.0, 0.99)
    # Pure rotation (degraded: the motion does not observe depth) when the matches' median displacement after
    # removing the rotation (the parallax, network pixels) is below this many pixels...
    pure_rotation_parallax_px: float = ranged(0.5, 0.0, 1000.0)
    # ...or below this multiple of the pose's own median reprojection error (the keypoints' noise, 0.6-1 px for the
    # shipped KeypointNet).
    pure_rotation_parallax_ratio: float = ranged(1.5, 0.0, 100.0)
    # Pure rotation is only flagged when the camera turned by at least this many degrees (else it stands still).
    pure_rotation_min_deg: float = ranged(0.5, 0.0, 180.0)
    # While lost: "hold" the last pose, or continue at the last "constant_velocity".
    lost_motion: str = one_of("hold", LOST_MOTIONS)
    # Frames to keep matching against the last well-tracked frame after losing track before re-anchoring on the
    # newest frame (at the held pose).
    max_frames_lost_reference: int = ranged(10, 0, 100000)
    # Frames are tracked against the last keyframe. A tracked frame becomes the new keyframe when its
    # rotation-compensated parallax to the keyframe reaches this many network pixels (0 = every frame is a keyframe:
    # frame-to-frame tracking, each frame refined by the window)... 0 by default: sparser keyframes (3-8 px) measured
    # worse on the synthetic suites (docs/odometry.md).
    keyframe_parallax_px: float = ranged(0.0, 0.0, 1000.0)
    # ...or when its inlier matches fall below this fraction of those of the first frame tracked against the
    # keyframe (the view is moving away from the keyframe)...
    keyframe_min_tracked_ratio: float = ranged(0.6, 0.0, 1.0)
    # ...or at the latest this many frames after the keyframe.
    keyframe_max_frames: int = ranged(15, 1, 100000)
    # Refine each new keyframe by a sliding-window bundle adjustment (gtsam) over the last keyframes: poses and
    # keypoint landmarks, robust reprojection errors, the predicted depth as a prior on each landmark. Off by
    # default: it costs 45-90 ms per keyframe on one CPU core and measured better indoors (handheld ATE 0.020 vs
    # 0.026 m, indoor-slow 0.036 vs 0.063 m) but worse on driving (0.91 vs 0.81 m) and the demo (docs/odometry.md).
    window_ba: bool = False
    # Keyframes in the bundle-adjustment window (the oldest is held fixed).
    ba_window_keyframes: int = ranged(6, 2, 100)
    # Relative standard deviation of the predicted depth in the window's depth prior (0.15 = 15 %); it sets how
    # strongly the depth, the window's only source of scale, holds the landmarks. 0.5 was better on the synthetic
    # street and worse indoors (docs/odometry.md) and lets a fronto-parallel plane trade pitch for translation.
    ba_depth_sigma: float = ranged(0.15, 0.001, 10.0)
    # Scale of the Cauchy loss on the window's reprojection residuals in network pixels (the noise is taken as 1 px):
    # the pull of a mismatch fades beyond it.
    ba_robust_px: float = ranged(2.0, 0.01, 100.0)
    # Levenberg-Marquardt iterations per keyframe.
    ba_max_iterations: int = ranged(10, 1, 1000)
    # Stamps that go back in time start a new trajectory; a gap longer than this many seconds re-initialises
    # tracking (the motion in the gap is unknown; the pose is kept as for keep_pose_on_reinit). 0 = no gap limit.
    max_time_gap_s: float = ranged(1.0, 0.0, 1e6)
    # On an image size or intrinsics change: keep the odometry pose (True, re-anchor there) or restart at identity.
    keep_pose_on_reinit: bool = True
    # Threads for PyTorch / ONNX Runtime on the CPU; 0 leaves the library default (all cores). On a small or shared
    # CPU use 1: with 2 threads on the project's busy 2-core machine every stage ran 5-10x slower (benchmarks/).
    num_threads: int = ranged(0, 0, 1024)
    # Run DepthNet and KeypointNet side by side in two threads (each with num_threads threads): with num_threads 1
    # on an otherwise idle 2-core CPU this overlaps the two networks; measure with benchmarks/pipeline.py.
    concurrent_networks: bool = False
    # Network precision: "auto" = INT8 for openvino and onnxruntime on the CPU (Conv-only static quantisation, used
    # only where it passes the parity check against FP32, inference/quantize.py), FP16 for tensorrt, FP32 for torch;
    # or "fp32", "fp16" (tensorrt, torch on CUDA), "int8" (openvino, onnxruntime: KeypointNet and DepthNet's encoder;
    # its decoder stays FP32), "int8_keypoints" (only KeypointNet in INT8: the FP32 depth, 29.9 instead of 32.8 FPS
    # at 320x96; docs/odometry.md).
    precision: str = one_of("auto", PRECISIONS)
    # A separate KeypointNet checkpoint (python -m priordepth_core.train.keypoints) for a depth-only checkpoint.
    keypoint_checkpoint: str = ""
    # Reuse ONNX graphs exported earlier ($PRIORDEPTH_CACHE/onnx), keyed by the weights and the input size.
    onnx_cache: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field that cannot be used: declared limits, then the rest."""
        check_fields(self)
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"config value device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        for name in ("input_height", "input_width"):
            if 0 < getattr(self, name) < MIN_INPUT_SIZE:
                raise ConfigError(f"config value {name} must be 0 (the checkpoint's size) or at least {MIN_INPUT_SIZE} "
                                  f"(DepthNet's strides), got {getattr(self, name)!r}")
        if (self.input_height == 0) != (self.input_width == 0):
            raise ConfigError("set both input_height and input_width, or neither")
        try:
            resolve_precision(self.backend, self.precision, self.device)
        except ValueError as exc:
            raise ConfigError(f"config value precision: {exc}") from None

    def replace(self, **changes) -> PipelineConfig:
        """A validated copy with some fields changed; unknown names raise ConfigError with the nearest field."""
        config = merge(self, changes, what="PipelineConfig field")
        config.validate()
        return config


def load_pipeline_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                         base: PipelineConfig | None = None) -> PipelineConfig:
    """``base`` (default: the defaults) updated from an optional YAML file of fields, then ``key=value`` overrides.

    Raises:
        ConfigError: unreadable file, unknown key (naming the nearest field), wrong type or a value out of range.
    """
    return load(PipelineConfig() if base is None else base, path, overrides)
