"""Offline runner: the streaming pipeline over a recorded sequence (TUM, KITTI, rosbag2, synthetic suites) with
pictures, the trajectory and metrics; the command line is ``python -m priordepth_core.infer``."""

from .runner import run_sequence, summary_table
from .sources import FrameData, InputSequence, open_input

__all__ = ["FrameData", "InputSequence", "open_input", "run_sequence", "summary_table"]
