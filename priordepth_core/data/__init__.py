"""Datasets: readers yielding plain frames (KITTI raw, KITTI odometry, TUM RGB-D, rosbag2, synthetic suites), the
sampler building training samples from them, and trajectory files.

Frames are described in :mod:`priordepth_core.data.frames`, the sample contract in
:mod:`priordepth_core.data.sample`, datasets by name in :mod:`priordepth_core.data.registry`.
"""

from .errors import DatasetError
from .frames import Frame, FrameReader
from .kitti_odometry import KittiOdometryReader
from .kitti_raw import KittiRawReader
from .registry import READERS, build_datasets, build_split
from .rosbag import RosbagReader
from .sample import Augmentation, FrameSamples, SequenceCollection
from .suite import SyntheticSuiteReader
from .trajectory_io import read_trajectory, write_kitti_poses, write_tum_trajectory
from .tum_rgbd import TumRgbdReader

__all__ = [
    "READERS",
    "Augmentation",
    "DatasetError",
    "Frame",
    "FrameReader",
    "FrameSamples",
    "KittiOdometryReader",
    "KittiRawReader",
    "RosbagReader",
    "SequenceCollection",
    "SyntheticSuiteReader",
    "TumRgbdReader",
    "build_datasets",
    "build_split",
    "read_trajectory",
    "write_kitti_poses",
    "write_tum_trajectory",
]
