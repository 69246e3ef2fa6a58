"""ROS 2 messages as ``rosbags`` objects, built from numpy arrays: the one place that knows message layouts.

Conventions at this boundary:

- Quaternions are ROS order ``(x, y, z, w)``, converted to and from rotation matrices only by
  ``quaternion_xyzw_from_rotation_np`` and ``rotation_from_quaternion_xyzw_np`` of
  :mod:`priordepth_core.geometry.se3` (the node uses the same two).
- ``T_parent_child`` (4, 4) maps points of the child frame into the parent frame; a ``TransformStamped`` with
  ``header.frame_id = parent`` and ``child_frame_id = child`` carries exactly that transform (tf2's convention).
- Images are ``rgb8`` (H, W, 3) uint8; ground-truth depth is ``32FC1`` metres with NaN where there is no
  measurement (REP 118), converted from the core's 0 = invalid.
- CameraInfo follows REP 104 for a monocular camera: ``k = K``, ``r = I``, ``p = [K | 0]``, ``plumb_bob`` with the
  given distortion (zeros for rectified or synthetic images).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_typestore

from priordepth_core.geometry.se3 import quaternion_xyzw_from_rotation_np, rotation_from_quaternion_xyzw_np, so3_log_np

# Jazzy's definitions: the same as the ros-jazzy wheels that `play` and the node use (type hashes included).
TYPESTORE = get_typestore(Stores.ROS2_JAZZY)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
ODOMETRY = "nav_msgs/msg/Odometry"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"

NANOSECONDS = 1_000_000_000


def _type(name: str) -> Any:
    return TYPESTORE.types[name]


def seconds_to_nanoseconds(seconds: float) -> int:
    """Seconds (float) to integer nanoseconds, splitting whole seconds first so large epoch stamps keep their digits."""
    whole = int(np.floor(seconds))
    return whole * NANOSECONDS + round(float(seconds - whole) * NANOSECONDS)


def stamp(stamp_ns: int) -> Any:
    """``builtin_interfaces/Time`` of integer nanoseconds (non-negative)."""
    if stamp_ns < 0:
        raise ValueError(f"ROS time cannot be negative, got {stamp_ns} ns")
    return _type("builtin_interfaces/msg/Time")(sec=int(stamp_ns // NANOSECONDS), nanosec=int(stamp_ns % NANOSECONDS))


def stamp_to_nanoseconds(time: Any) -> int:
    """Integer nanoseconds of a ``builtin_interfaces/Time``."""
    return int(time.sec) * NANOSECONDS + int(time.nanosec)


def header(stamp_ns: int, frame_id: str) -> Any:
    return _type("std_msgs/msg/Header")(stamp=stamp(stamp_ns), frame_id=frame_id)


def matrix_from_pose(position: Any, orientation: Any) -> np.ndarray:
    """(4, 4) transform from ROS ``position`` (x, y, z) and ``orientation`` (x, y, z, w) fields."""
    T = np.eye(4)
    T[:3, :3] = rotation_from_quaternion_xyzw_np([orientation.x, orientation.y, orientation.z, orientation.w])
    T[:3, 3] = [position.x, position.y, position.z]
    return T


def image_rgb8(stamp_ns: int, frame_id: str, rgb: np.ndarray) -> Any:
    """``sensor_msgs/Image`` (rgb8) of an (H, W, 3) uint8 RGB array."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    return _type(IMAGE)(header=header(stamp_ns, frame_id), height=height, width=width, encoding="rgb8",
                        is_bigendian=0, step=width * 3, data=np.ascontiguousarray(rgb).reshape(-1))


def image_depth_32fc1(stamp_ns: int, frame_id: str, depth: np.ndarray) -> Any:
    """``sensor_msgs/Image`` (32FC1, metres, little-endian) of (H, W) depth where 0 means invalid; invalid -> NaN."""
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    metres = np.ascontiguousarray(depth, dtype="<f4").copy()
    metres[~(metres > 0)] = np.nan  # also maps NaN and negatives: every non-measurement is NaN
    height, width = metres.shape
    return _type(IMAGE)(header=header(stamp_ns, frame_id), height=height, width=width, encoding="32FC1",
                        is_bigendian=0, step=width * 4, data=metres.view(np.uint8).reshape(-1))


def camera_info(stamp_ns: int, frame_id: str, K: np.ndarray, size_hw: tuple[int, int],
                distortion: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)) -> Any:
    """``sensor_msgs/CameraInfo`` of a monocular pinhole camera (REP 104), no binning, full-image ROI."""
    K = np.asarray(K, dtype=np.float64)
    P = np.concatenate([K, np.zeros((3, 1))], axis=1)
    roi = _type("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _type(CAMERA_INFO)(header=header(stamp_ns, frame_id), height=int(size_hw[0]), width=int(size_hw[1]),
                              distortion_model="plumb_bob", d=np.asarray(distortion, dtype=np.float64),
                              k=K.reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0,
                              roi=roi)


def _transform(T: np.ndarray) -> Any:
    q = quaternion_xyzw_from_rotation_np(T[:3, :3])
    translation = _type("geometry_msgs/msg/Vector3")(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3]))
    rotation = _type("geometry_msgs/msg/Quaternion")(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))
    return _type("geometry_msgs/msg/Transform")(translation=translation, rotation=rotation)


def transform_stamped(stamp_ns: int, parent: str, child: str, T_parent_child: np.ndarray) -> Any:
    return _type("geometry_msgs/msg/TransformStamped")(header=header(stamp_ns, parent), child_frame_id=child,
                                                       transform=_transform(T_parent_child))


def tf_message(transforms: list[Any]) -> Any:
    return _type(TF_MESSAGE)(transforms=transforms)


def odometry(stamp_ns: int, parent: str, child: str, T_parent_child: np.ndarray, linear_velocity: np.ndarray,
             angular_velocity: np.ndarray) -> Any:
    """``nav_msgs/Odometry`` of an exact (ground-truth) pose: zero pose covariance; the twist is in the child frame.

    Args:
        linear_velocity, angular_velocity: (3,) m/s and rad/s expressed in the child frame (the Odometry convention).
    """
    transform = _transform(T_parent_child)
    point = _type("geometry_msgs/msg/Point")(x=transform.translation.x, y=transform.translation.y,
                                             z=transform.translation.z)
    pose = _type("geometry_msgs/msg/Pose")(position=point, orientation=transform.rotation)
    Vector3 = _type("geometry_msgs/msg/Vector3")
    twist = _type("geometry_msgs/msg/Twist")(linear=Vector3(*(float(v) for v in linear_velocity)),
                                             angular=Vector3(*(float(v) for v in angular_velocity)))
    zeros = np.zeros(36)
    return _type(ODOMETRY)(
        header=header(stamp_ns, parent), child_frame_id=child,
        pose=_type("geometry_msgs/msg/PoseWithCovariance")(pose=pose, covariance=zeros),
        twist=_type("geometry_msgs/msg/TwistWithCovariance")(twist=twist, covariance=zeros.copy()))


def body_velocities(stamps_s: np.ndarray, T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite-difference velocities of a trajectory, in each pose's own frame (nav_msgs/Odometry's twist).

    Frame i >= 1 gets the mean velocity over (i-1, i]; frame 0 that over [0, 1]; a single pose gets zeros.

    Args:
        stamps_s: (N,) seconds, strictly increasing.
        T_world_cam: (N, 4, 4).

    Returns:
        ``(linear, angular)``: (N, 3) m/s and (N, 3) rad/s.
    """
    count = len(stamps_s)
    linear, angular = np.zeros((count, 3)), np.zeros((count, 3))
    if count < 2:
        return linear, angular
    dt = np.diff(stamps_s)
    if np.any(dt <= 0):
        raise ValueError(f"stamps must increase strictly; frame {int(np.argmin(dt)) + 1} does not")
    R_previous, R_current = T_world_cam[:-1, :3, :3], T_world_cam[1:, :3, :3]
    step = T_world_cam[1:, :3, 3] - T_world_cam[:-1, :3, 3]
    linear[1:] = np.einsum("nji,nj->ni", R_current, step) / dt[:, None]  # R^T (t_i - t_{i-1}) / dt
    # The rotation vector of R_{i-1}^T R_i is the same in frames i-1 and i (its axis is fixed by the rotation).
    angular[1:] = so3_log_np(np.swapaxes(R_previous, 1, 2) @ R_current) / dt[:, None]
    linear[0], angular[0] = linear[1], angular[1]
    return linear, angular


def serialize(message: Any, msgtype: str) -> bytes:
    """CDR (little-endian, with the 4-byte encapsulation header) as rosbag2 stores and rclpy publishes it."""
    return bytes(TYPESTORE.serialize_cdr(message, msgtype))
