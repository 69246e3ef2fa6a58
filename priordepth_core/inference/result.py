"""What the pipeline returns for one frame: :class:`FrameResult` and the :class:`TrackingState` flag."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

# Keys of FrameResult.timings_ms, in pipeline order ("scale" only does work in scale_mode "camera_height").
TIMING_STAGES = ("preprocess", "depth", "keypoints", "matching", "pose", "scale", "total")


class TrackingState(str, enum.Enum):
    """How much the pose of a frame can be trusted."""

    # No previous frame to track against (first frame, after reset() or a size/intrinsics change).
    INITIALIZING = "initializing"
    # Pose from enough inlier matches on a sharp image.
    OK = "ok"
    # Pose estimated but weakly supported: few inliers, a blurred image, pure rotation or the essential fallback.
    DEGRADED = "degraded"
    # No usable pose: the last pose is held (or extrapolated) with a large covariance; depth is still produced.
    LOST = "lost"


@dataclass
class FrameResult:
    """Everything the pipeline knows about one frame (numpy, CPU).

    Attributes:
        stamp: the frame's time in seconds, as given.
        depth: (H, W) float32 depth at the input image resolution, metres in scale mode "camera_height", the
            network's scale in "relative" mode; NaN where invalid.
        keypoints: (N, 2) float32 pixel (x, y) at the input resolution, best score first.
        keypoint_scores: (N,) float32 in [0, 1].
        points_camera: (N, 3) float32 keypoints lifted with ``depth`` into the camera frame (x right, y down,
            z forward), same units as ``depth``.
        matches: (M, 2) int64 pairs (index into ``previous_keypoints``, index into ``keypoints``).
        match_inliers: (M,) bool, the matches the pose agrees with.
        previous_keypoints: (P, 2) float32 keypoints of the frame this one was matched against (the last keyframe:
            the previous frame with ``keyframe_parallax_px`` 0), at the input resolution; empty when none.
        T_prev_curr: (4, 4) float64 pose of this camera in the previous frame's camera (identity when
            initialising; the held or extrapolated motion when lost).
        T_odom_curr: (4, 4) float64 pose of this camera in the odometry frame (identity on the first frame).
        covariance: (6, 6) float64 covariance of ``T_odom_curr`` in nav_msgs order (x, y, z, roll, pitch, yaw),
            position and rotation perturbations both expressed in the odometry frame. Accumulated since tracking
            last (re)started; ``LOST_VARIANCE`` on the diagonal while lost.
        tracking_state: see :class:`TrackingState`.
        scale_source: "relative" or "camera_height" (the metric scale actually in use on this frame).
        timings_ms: per stage (``TIMING_STAGES``): preprocess, depth, keypoints, matching, pose, scale, total.
        reinitialized: True when this frame has nothing to track against: the first frame, after ``reset()``, or
            after the image size or intrinsics changed (``message`` says which).
        message: why the frame is degraded, lost or re-initialised; "" when all is well.
        num_inliers: inlier matches of the pose solve (0 when none).
        relative_covariance: (6, 6) float64 covariance of the pose relative to the frame matched against (that is
            of ``T_prev_curr`` except on the first frame after a loss of tracking), position and rotation in that
            frame's axes, same order as ``covariance``; inflated when degraded, ``LOST_VARIANCE`` on the diagonal
            when there is no relative pose (initialising, lost).
        scale: factor applied to the network's depth (1.0 in "relative" mode).
        sharpness: variance of the Laplacian of the grey network input (the blur measure).
        reference_stamp: stamp of the frame ``previous_keypoints`` belong to (NaN when there is none).
        keyframe: this frame became the keyframe later frames are tracked against (its pose refined by the window
            bundle adjustment when that is on).
    """

    stamp: float
    depth: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    points_camera: np.ndarray
    matches: np.ndarray
    match_inliers: np.ndarray
    previous_keypoints: np.ndarray
    T_prev_curr: np.ndarray
    T_odom_curr: np.ndarray
    covariance: np.ndarray
    tracking_state: TrackingState
    scale_source: str
    timings_ms: dict[str, float]
    reinitialized: bool
    message: str
    num_inliers: int = 0
    relative_covariance: np.ndarray = field(default_factory=lambda: np.zeros((6, 6)))
    scale: float = 1.0
    sharpness: float = 0.0
    reference_stamp: float = float("nan")
    keyframe: bool = False
