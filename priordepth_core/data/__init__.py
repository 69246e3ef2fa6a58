"""Datasets: trajectory files and readers (KITTI raw, KITTI odometry, TUM RGB-D, rosbag2) yielding one sample dict.

The sample contract is documented in :mod:`priordepth_core.data.sample`.
"""

from .errors import DatasetError
from .kitti_odometry import KittiOdometryDataset
from .kitti_raw import KittiRawDataset
from .rosbag import RosbagDataset
from .sample import Augmentation, Frame, FrameSequenceDataset
from .trajectory_io import read_trajectory, write_kitti_poses, write_tum_trajectory
from .tum_rgbd import TumRgbdDataset

__all__ = [
    "Augmentation",
    "DatasetError",
    "Frame",
    "FrameSequenceDataset",
    "KittiOdometryDataset",
    "KittiRawDataset",
    "RosbagDataset",
    "TumRgbdDataset",
    "read_trajectory",
    "write_kitti_poses",
    "write_tum_trajectory",
]
