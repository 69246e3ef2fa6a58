"""PipelineConfig: every knob of the streaming pipeline, with its default and why.

The ROS node maps its parameters onto these fields one to one; defaults live here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..models.depth_net import INPUT_MULTIPLE

BACKENDS = ("torch", "onnxruntime", "tensorrt")
SCALE_MODES = ("relative", "camera_height")
LOST_MOTIONS = ("hold", "constant_velocity")
PRECISIONS = ("fp32", "fp16")
# DepthNet's stride-32 features must be at least 2 pixels a side for its reflection padding.
MIN_INPUT_SIZE = 2 * INPUT_MULTIPLE


@dataclass
class PipelineConfig:
    # Network runtime: "torch", "onnxruntime" (CPU, or CUDA with onnxruntime-gpu) or "tensorrt" (torch-tensorrt,
    # CUDA only).
    backend: str = "torch"
    # "cpu", "cuda" or "cuda:N" for the networks and the pose solve.
    device: str = "cpu"
    # Network input height; 0 = the checkpoint's training size. A multiple of 32 (DepthNet's strides), >= 64.
    input_height: int = 0
    # Network input width; 0 = the checkpoint's training size. A multiple of 32, >= 64.
    input_width: int = 0
    # "relative": depth and translation in the network's own (arbitrary, roughly consistent) scale.
    # "camera_height": metric, from the camera's known height above a ground plane seen in the lower image.
    scale_mode: str = "relative"
    # Height of the optical centre above the ground in metres, for scale_mode "camera_height" (KITTI: 1.65).
    camera_height_m: float = 1.65
    # Keypoints kept per frame (the best-scoring KeypointNet cells).
    max_keypoints: int = 512
    # Pose from fewer inliers than this is "degraded"; from fewer than half of it, tracking is "lost".
    min_inliers: int = 20
    # Most hypotheses of the PnP RANSAC (it stops earlier once confident). 64 give 99.9 % confidence of one
    # all-inlier 6-point sample at a 68 % inlier ratio; samples are drawn by match confidence, which favours inliers.
    ransac_hypotheses: int = 64
    # Inlier threshold of the PnP RANSAC in network-input pixels (the shipped KeypointNet localises to ~1 px).
    ransac_threshold_px: float = 2.0
    # Lowe's ratio test of the descriptor matcher (mutual nearest neighbours are always required).
    match_ratio: float = 0.9
    # A frame whose sharpness (variance of the Laplacian) falls below this fraction of the running median of
    # recent frames is "blurred": its pose is reported as degraded.
    blur_ratio: float = 0.35
    # Pure rotation (degraded: the motion does not observe depth) when the matches' median displacement after
    # removing the rotation (the parallax, network pixels) is below this many pixels...
    pure_rotation_parallax_px: float = 0.5
    # ...or below this multiple of the pose's own median reprojection error (the keypoints' noise, 0.6-1 px for the
    # shipped KeypointNet).
    pure_rotation_parallax_ratio: float = 1.5
    # Pure rotation is only flagged when the camera turned by at least this many degrees (else it stands still).
    pure_rotation_min_deg: float = 0.5
    # While lost: "hold" the last pose, or continue at the last "constant_velocity".
    lost_motion: str = "hold"
    # Frames to keep matching against the last well-tracked frame after losing track before re-anchoring on the
    # newest frame (at the held pose).
    max_frames_lost_reference: int = 10
    # On an image size or intrinsics change: keep the odometry pose (True, re-anchor there) or restart at identity.
    keep_pose_on_reinit: bool = True
    # Threads for PyTorch / ONNX Runtime on the CPU; 0 leaves the library default (all cores). On a small or shared
    # CPU use 1: with 2 threads on the project's busy 2-core machine every stage ran 5-10x slower (benchmarks/).
    num_threads: int = 0
    # Run DepthNet and KeypointNet side by side in two threads (each with num_threads threads): with num_threads 1
    # on an otherwise idle 2-core CPU this overlaps the two networks; measure with benchmarks/pipeline.py.
    concurrent_networks: bool = False
    # TensorRT precision ("fp16" or "fp32"); the torch backend on CUDA also honours "fp16".
    precision: str = "fp32"
    # A separate KeypointNet checkpoint (python -m priordepth_core.train.keypoints) for a depth-only checkpoint.
    keypoint_checkpoint: str = ""
    # Reuse ONNX graphs exported earlier ($PRIORDEPTH_CACHE/onnx), keyed by the weights and the input size.
    onnx_cache: bool = True

    def validate(self) -> None:
        """Raise ValueError naming the first field that cannot be used."""
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not isinstance(self.device, str) or not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        for name in ("input_height", "input_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0 or value % INPUT_MULTIPLE or 0 < value < MIN_INPUT_SIZE:
                raise ValueError(f"{name} must be 0 (checkpoint's size) or a multiple of {INPUT_MULTIPLE} of at least "
                                 f"{MIN_INPUT_SIZE}, got {value!r}")
        if (self.input_height == 0) != (self.input_width == 0):
            raise ValueError("set both input_height and input_width, or neither")
        if self.scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {', '.join(SCALE_MODES)}, got {self.scale_mode!r}")
        if not self.camera_height_m > 0:
            raise ValueError(f"camera_height_m must be positive, got {self.camera_height_m!r}")
        if not isinstance(self.max_keypoints, int) or self.max_keypoints < 8:
            raise ValueError(f"max_keypoints must be an integer >= 8, got {self.max_keypoints!r}")
        if not isinstance(self.min_inliers, int) or self.min_inliers < 6:
            raise ValueError(f"min_inliers must be an integer >= 6 (PnP's minimal set), got {self.min_inliers!r}")
        if not isinstance(self.ransac_hypotheses, int) or self.ransac_hypotheses < 1:
            raise ValueError(f"ransac_hypotheses must be a positive integer, got {self.ransac_hypotheses!r}")
        if not self.ransac_threshold_px > 0:
            raise ValueError(f"ransac_threshold_px must be positive, got {self.ransac_threshold_px!r}")
        if not 0 < self.match_ratio <= 1:
            raise ValueError(f"match_ratio must be in (0, 1], got {self.match_ratio!r}")
        if not 0 <= self.blur_ratio < 1:
            raise ValueError(f"blur_ratio must be in [0, 1), got {self.blur_ratio!r}")
        if min(self.pure_rotation_parallax_px, self.pure_rotation_parallax_ratio, self.pure_rotation_min_deg) < 0:
            raise ValueError("pure_rotation_parallax_px, pure_rotation_parallax_ratio and pure_rotation_min_deg must "
                             "be non-negative")
        if self.lost_motion not in LOST_MOTIONS:
            raise ValueError(f"lost_motion must be one of {', '.join(LOST_MOTIONS)}, got {self.lost_motion!r}")
        if not isinstance(self.max_frames_lost_reference, int) or self.max_frames_lost_reference < 0:
            raise ValueError(f"max_frames_lost_reference must be a non-negative integer, "
                             f"got {self.max_frames_lost_reference!r}")
        if not isinstance(self.num_threads, int) or self.num_threads < 0:
            raise ValueError(f"num_threads must be a non-negative integer, got {self.num_threads!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def replace(self, **changes) -> PipelineConfig:
        """A validated copy with some fields changed; unknown names raise ValueError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown PipelineConfig field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        config = dataclasses.replace(self, **changes)
        config.validate()
        return config
