"""Evaluation metrics as pure functions on numpy arrays: depth (Eigen/MonoDepth2 protocol), trajectories (ATE, RPE,
KITTI odometry drift, MonoDepth2 snippet ATE) and keypoints (repeatability, homography accuracy, matching score)."""

from .depth_metrics import (
    aggregate_depth_metrics,
    compute_depth_errors,
    compute_depth_metrics,
    crop_mask,
    resize_prediction,
)
from .keypoint_metrics import homography_correctness, matching_score, repeatability, warp_keypoints
from .pose_metrics import (
    absolute_trajectory_error,
    align_trajectory,
    kitti_odometry_error,
    relative_pose_error,
    snippet_ate,
    snippet_ate_sequence,
    trajectory_distances,
    umeyama_alignment,
)

__all__ = [
    "absolute_trajectory_error",
    "aggregate_depth_metrics",
    "align_trajectory",
    "compute_depth_errors",
    "compute_depth_metrics",
    "crop_mask",
    "homography_correctness",
    "kitti_odometry_error",
    "matching_score",
    "relative_pose_error",
    "repeatability",
    "resize_prediction",
    "snippet_ate",
    "snippet_ate_sequence",
    "trajectory_distances",
    "umeyama_alignment",
    "warp_keypoints",
]
