"""Networks: plain ``nn.Module``s that map tensors to tensors and know nothing of batches or losses."""

from .depth_net import DepthNet, disp_to_depth
from .keypoint_matching import gather_matches, match_descriptors
from .keypoint_net import KEYPOINT_CELL, KeypointNet, sample_descriptors, select_keypoints
from .pose_net import PoseNet
from .resnet import ResnetEncoder

__all__ = [
    "KEYPOINT_CELL",
    "DepthNet",
    "KeypointNet",
    "PoseNet",
    "ResnetEncoder",
    "disp_to_depth",
    "gather_matches",
    "match_descriptors",
    "sample_descriptors",
    "select_keypoints",
]
