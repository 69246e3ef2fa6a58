"""Synthetic sequences with exact ground truth: procedural street and room scenes rendered headless (OpenGL via
moderngl/EGL) with exact metric depth, poses and intrinsics, written in TUM RGB-D or KITTI odometry layout, and
named benchmark suites.

Conventions: world frame z up; ``T_world_cam`` of the optical camera (x right, y down, z forward); depth is camera
z in metres, float32, 0 = invalid (the sky, which is at infinity); pixel centres at integer coordinates.
"""

from .motion import MOTIONS, Trajectory, make_trajectory, motion_statistics, replay_trajectory
from .raycast import cast_rays, raycast_depth
from .renderer import Renderer, projection_from_intrinsics
from .scenes import SCENES, Box, Lighting, Quad, Scene, build_scene, camera_clearance
from .sequence import SequenceSpec, SyntheticSequence, check_free_space, default_intrinsics, make_sequence
from .suites import SUITES, cache_dir, ensure_suite, load_manifest
from .writers import FORMATS, write_sequence

__all__ = [
    "FORMATS", "MOTIONS", "SCENES", "SUITES", "Box", "Lighting", "Quad", "Renderer", "Scene", "SequenceSpec",
    "SyntheticSequence", "Trajectory", "build_scene", "cache_dir", "camera_clearance", "cast_rays",
    "check_free_space", "default_intrinsics", "ensure_suite", "load_manifest", "make_sequence", "make_trajectory",
    "motion_statistics", "projection_from_intrinsics", "raycast_depth", "replay_trajectory", "write_sequence",
]
