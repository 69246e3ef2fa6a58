"""Geometry: cameras, SE(3), view synthesis and (in ``pose``) differentiable pose solvers."""

from .camera import (
    backproject_depth,
    invert_intrinsics,
    pixel_grid,
    project_points,
    resize_intrinsics,
    scale_intrinsics,
    transform_points,
    unproject_points,
)
from .se3 import (
    compose,
    invert_transform,
    make_transform,
    pose_vector_to_transform,
    rotation_angle,
    rotation_error_deg,
    se3_exp,
    se3_log,
    skew,
    so3_exp,
    so3_log,
    translation_direction_error_deg,
)
from .warp import pixels_to_grid, reproject_pixels, warp_image

__all__ = [
    "backproject_depth",
    "compose",
    "invert_intrinsics",
    "invert_transform",
    "make_transform",
    "pixel_grid",
    "pixels_to_grid",
    "pose_vector_to_transform",
    "project_points",
    "reproject_pixels",
    "resize_intrinsics",
    "rotation_angle",
    "rotation_error_deg",
    "scale_intrinsics",
    "se3_exp",
    "se3_log",
    "skew",
    "so3_exp",
    "so3_log",
    "transform_points",
    "translation_direction_error_deg",
    "unproject_points",
    "warp_image",
]
