"""Pure conversions between ROS 2 messages and numpy: images, CameraInfo, PointCloud2, poses, TF, Odometry.

Nothing here holds state or talks to the middleware; every function is tested by a round trip.

Conventions at this boundary:

- Images in numpy are (H, W, 3) uint8 RGB; ``sensor_msgs/Image`` rows may be padded (``step`` > width x bytes per
  pixel). Depth images are ``32FC1`` metres with NaN where invalid (REP 118).
- ``T_parent_child`` (4, 4) float64 maps points of the child frame into the parent frame; a ``TransformStamped``
  with ``header.frame_id = parent`` and ``child_frame_id = child`` carries exactly that transform (tf2's convention).
- Quaternions are ROS order ``(x, y, z, w)``; ``quaternion_xyzw_from_rotation_np`` and
  ``rotation_from_quaternion_xyzw_np`` of :mod:`priordepth_core.geometry.se3` are the only conversions between them
  and rotation matrices (here and in rosbag_tools).
- Covariances are (6, 6) in nav_msgs order (x, y, z, roll, pitch, yaw), flattened row-major into 36 values.

Speed: pixel data never passes through a Python loop. numpy arrays become message data with one copy
(``array.array.frombytes`` of the array's buffer) and message data becomes numpy without a copy
(``np.frombuffer``); ``benchmarks/node.py`` measures both (about 0.05 ms each way for 640x480 rgb8).
"""

from __future__ import annotations

import array
import sys

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Transform, TransformStamped, Twist, Vector3
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from priordepth_core.geometry.distortion import LensDistortion, Undistorter, UndistorterCache
from priordepth_core.geometry.se3 import quaternion_xyzw_from_rotation_np, rotation_from_quaternion_xyzw_np, se3_log_np

# Encodings accepted on the image input: channels and the OpenCV conversion to RGB (None: already RGB).
IMAGE_ENCODINGS = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
}
DEPTH_ENCODING = "32FC1"
NANOSECONDS = 1_000_000_000
HOST_IS_BIG_ENDIAN = sys.byteorder == "big"


class ConversionError(ValueError):
    """A message that cannot be converted; the text names the field and the problem."""


def _byte_array(data: np.ndarray) -> array.array:
    """The bytes of a numpy array as the ``array.array('B')`` that rclpy's ``uint8[]`` fields hold (one copy)."""
    out = array.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(data)).cast("B"))
    return out


# ------------------------------------------------------------------------------------------------------ time
def stamp_to_seconds(stamp: Time) -> float:
    """``builtin_interfaces/Time`` -> float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_to_nanoseconds(stamp: Time) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds (exact, for comparing stamps)."""
    return stamp.sec * NANOSECONDS + stamp.nanosec


# ----------------------------------------------------------------------------------------------------- images
def check_image_layout(message: Image) -> None:
    """Cheap header checks of a ``sensor_msgs/Image`` (no pixel access): raise ConversionError naming the problem.

    Done on arrival so that a malformed message never displaces a good frame waiting to be processed.
    """
    if message.encoding not in IMAGE_ENCODINGS:
        raise ConversionError(f"unsupported image encoding {message.encoding!r}; supported: "
                              f"{', '.join(IMAGE_ENCODINGS)}")
    if message.width == 0 or message.height == 0:
        raise ConversionError(f"empty image ({message.width}x{message.height})")
    channels = IMAGE_ENCODINGS[message.encoding][0]
    if message.step < message.width * channels:
        raise ConversionError(f"image step {message.step} is smaller than width x {channels} bytes "
                              f"({message.width * channels})")
    if len(message.data) != message.step * message.height:
        raise ConversionError(f"image data has {len(message.data)} bytes, expected step x height = "
                              f"{message.step * message.height}")


def image_to_rgb(message: Image) -> np.ndarray:
    """``sensor_msgs/Image`` (rgb8, bgr8, mono8, rgba8, bgra8; rows may be padded) -> (H, W, 3) uint8 RGB.

    Returns a new, writable, contiguous array (the message is left untouched).

    Raises:
        ConversionError: unsupported encoding, zero size, or data that does not match width, height and step.
    """
    check_image_layout(message)
    channels, conversion = IMAGE_ENCODINGS[message.encoding]
    rows = np.frombuffer(message.data, dtype=np.uint8).reshape(message.height, message.step)
    pixels = rows[:, : message.width * channels].reshape(message.height, message.width, channels)
    if conversion is None:
        return np.array(pixels)  # a contiguous copy, also when the rows were padded
    if channels == 1:
        pixels = pixels[..., 0]
    return cv2.cvtColor(pixels, conversion)


def compressed_image_to_rgb(message: CompressedImage) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG, colour or grey) -> (H, W, 3) uint8 RGB.

    Raises:
        ConversionError: empty data, a compressed depth image, or bytes OpenCV cannot decode.
    """
    if "compresseddepth" in message.format.lower():
        raise ConversionError(f"compressed depth images are not colour images (format {message.format!r})")
    if len(message.data) == 0:
        raise ConversionError("empty CompressedImage")
    bgr = cv2.imdecode(np.frombuffer(message.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConversionError(f"cannot decode CompressedImage of format {message.format!r} "
                              f"({len(message.data)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image(rgb: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    """(H, W, 3) uint8 RGB -> ``sensor_msgs/Image`` (``rgb8`` or ``bgr8``, unpadded rows)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    if encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"encoding must be rgb8 or bgr8, got {encoding!r}")
    pixels = rgb if encoding == "rgb8" else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    height, width = rgb.shape[:2]
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0, step=3 * width,
                 data=_byte_array(pixels))


def depth_to_image(depth: np.ndarray, header: Header) -> Image:
    """(H, W) float depth in metres (NaN invalid) -> ``sensor_msgs/Image`` ``32FC1`` in the host's byte order."""
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    depth = np.asarray(depth, dtype=np.float32)
    height, width = depth.shape
    return Image(header=header, height=height, width=width, encoding=DEPTH_ENCODING,
                 is_bigendian=int(HOST_IS_BIG_ENDIAN), step=4 * width, data=_byte_array(depth))


def image_to_depth(message: Image) -> np.ndarray:
    """``sensor_msgs/Image`` ``32FC1`` -> (H, W) float32 metres (a view of the message data when possible)."""
    if message.encoding != DEPTH_ENCODING:
        raise ConversionError(f"depth image encoding must be {DEPTH_ENCODING}, got {message.encoding!r}")
    if message.step < 4 * message.width or len(message.data) != message.step * message.height:
        raise ConversionError(f"depth image data has {len(message.data)} bytes for {message.width}x{message.height} "
                              f"with step {message.step}")
    dtype = np.dtype(np.float32).newbyteorder(">" if message.is_bigendian else "<")
    rows = np.frombuffer(message.data, dtype=np.uint8).reshape(message.height, message.step)
    return rows[:, : 4 * message.width].view(dtype).astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------------------ camera info
def camera_info_intrinsics(message: CameraInfo, use_projection: bool = False) -> np.ndarray:
    """(3, 3) float64 intrinsics of a ``sensor_msgs/CameraInfo``.

    Args:
        message: the camera's CameraInfo.
        use_projection: take the intrinsics from ``P`` (the rectified image's camera, REP 104: use with
            ``image_rect`` topics) instead of ``K`` (the raw image's camera).

    Raises:
        ConversionError: no image size, non-finite values, non-positive focal lengths (an uncalibrated camera sends
            zeros), or a principal point outside the image (a K calibrated at another resolution).
    """
    if message.width <= 0 or message.height <= 0:
        raise ConversionError(f"CameraInfo has no image size ({message.width}x{message.height}); the camera driver "
                              "must fill width and height with the size of the images it calibrates")
    if use_projection:
        K = np.asarray(message.p, dtype=np.float64).reshape(3, 4)[:, :3].copy()
        name = "P"
    else:
        K = np.asarray(message.k, dtype=np.float64).reshape(3, 3).copy()
        name = "K"
    if not np.all(np.isfinite(K)):
        raise ConversionError(f"CameraInfo {name} contains non-finite values")
    if not (K[0, 0] > 0 and K[1, 1] > 0) or K[2, 2] != 1.0:
        raise ConversionError(f"CameraInfo {name} is not a calibrated pinhole camera (fx={K[0, 0]}, fy={K[1, 1]}, "
                              f"[2, 2]={K[2, 2]}); is the camera calibrated?")
    cx, cy = K[0, 2], K[1, 2]
    if not (0.0 <= cx <= message.width and 0.0 <= cy <= message.height):
        raise ConversionError(f"CameraInfo {name} puts the principal point ({cx:g}, {cy:g}) outside the "
                              f"{message.width}x{message.height} image; is it the calibration of another resolution?")
    return K


def camera_info_undistorter(message: CameraInfo, use_projection: bool = False,
                            cache: UndistorterCache | None = None) -> Undistorter:
    """The rectification of a CameraInfo's camera (:mod:`priordepth_core.geometry.distortion`).

    Raw images (``use_projection`` False) are rectified with ``distortion_model`` and ``d`` to the camera of ``P``
    (as ``image_proc`` does; K where P is empty or not a pinhole); rectified topics (``use_projection``) are the
    identity with ``P``'s intrinsics. ``rectified_K`` is the camera of the images the pipeline then sees.

    Raises:
        ConversionError: as :func:`camera_info_intrinsics`, or an unsupported distortion model or coefficient count.
    """
    K = camera_info_intrinsics(message, use_projection)
    size_hw = (int(message.height), int(message.width))
    lens = None
    rectified_K = None
    if not use_projection:
        try:
            lens = LensDistortion.from_camera_info(message.distortion_model, message.d)
        except ValueError as error:
            raise ConversionError(f"CameraInfo distortion: {error}") from None
        try:
            rectified_K = camera_info_intrinsics(message, use_projection=True)
        except ConversionError:  # many drivers leave P zero for an uncalibrated or pinhole camera
            rectified_K = None
    if cache is None:
        return Undistorter(K, lens, size_hw, rectified_K)
    return cache.get(K, lens, size_hw, rectified_K)


def camera_info_message(K: np.ndarray, width: int, height: int, header: Header,
                        distortion: np.ndarray | None = None) -> CameraInfo:
    """A monocular CameraInfo after REP 104: ``k = K``, ``r = I``, ``p = [K | 0]``, ``plumb_bob`` distortion."""
    K = np.asarray(K, dtype=np.float64)
    P = np.zeros((3, 4))
    P[:, :3] = K
    d = np.zeros(5) if distortion is None else np.asarray(distortion, dtype=np.float64)
    return CameraInfo(header=header, width=int(width), height=int(height), distortion_model="plumb_bob",
                      d=d.tolist(), k=K.reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1))


def camera_info_with_header(message: CameraInfo, header: Header) -> CameraInfo:
    """A copy of ``message`` with another header (the depth image is at the input size, so its camera is the same)."""
    return CameraInfo(header=header, height=message.height, width=message.width,
                      distortion_model=message.distortion_model, d=message.d, k=message.k, r=message.r,
                      p=message.p, binning_x=message.binning_x, binning_y=message.binning_y, roi=message.roi)


# ------------------------------------------------------------------------------------------------ point cloud
_POINT_FIELD_TYPES = {
    PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
    PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8",
}


def points_to_pointcloud2(points: np.ndarray, header: Header, scores: np.ndarray | None = None) -> PointCloud2:
    """(N, 3) points (and optional (N,) scores) -> unordered ``PointCloud2`` with float32 fields x, y, z (, score)."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    names = ["x", "y", "z"] + ([] if scores is None else ["score"])
    cloud = np.empty(len(points), dtype=np.dtype({"names": names, "formats": ["<f4"] * len(names)}))
    cloud["x"], cloud["y"], cloud["z"] = points[:, 0], points[:, 1], points[:, 2]
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if len(scores) != len(points):
            raise ValueError(f"{len(scores)} scores for {len(points)} points")
        cloud["score"] = scores
    fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, name in
              enumerate(names)]
    return PointCloud2(header=header, height=1, width=len(points), fields=fields, is_bigendian=False,
                       point_step=4 * len(names), row_step=4 * len(names) * len(points),
                       data=_byte_array(cloud), is_dense=bool(np.isfinite(points).all()))


def pointcloud2_to_array(message: PointCloud2) -> np.ndarray:
    """``PointCloud2`` -> structured numpy array with one named column per field (scalar fields only)."""
    byte_order = ">" if message.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for field in message.fields:
        if field.datatype not in _POINT_FIELD_TYPES or field.count != 1:
            raise ConversionError(f"PointCloud2 field {field.name!r}: datatype {field.datatype} x {field.count} is "
                                  "not a scalar")
        names.append(field.name)
        formats.append(byte_order + _POINT_FIELD_TYPES[field.datatype])
        offsets.append(field.offset)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": message.point_step})
    count = message.width * message.height
    if len(message.data) != message.row_step * message.height or message.row_step != message.point_step * \
            message.width:
        raise ConversionError(f"PointCloud2 data has {len(message.data)} bytes for {count} points of "
                              f"{message.point_step} bytes")
    return np.frombuffer(message.data, dtype=dtype, count=count)


# ------------------------------------------------------------------------------------------------------ poses
def transform_matrix(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """(4, 4) homogeneous transform from a (3, 3) rotation and a (3,) translation."""
    T = np.eye(4)
    T[:3, :3] = rotation
    T[:3, 3] = translation
    return T


def pose_from_matrix(T: np.ndarray) -> Pose:
    """(4, 4) ``T_parent_child`` -> ``geometry_msgs/Pose`` of the child in the parent."""
    x, y, z, w = quaternion_xyzw_from_rotation_np(T[:3, :3])
    return Pose(position=Point(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                orientation=Quaternion(x=float(x), y=float(y), z=float(z), w=float(w)))


def matrix_from_pose(pose: Pose) -> np.ndarray:
    """``geometry_msgs/Pose`` -> (4, 4) transform."""
    o, p = pose.orientation, pose.position
    return transform_matrix(rotation_from_quaternion_xyzw_np([o.x, o.y, o.z, o.w]), [p.x, p.y, p.z])


def transform_stamped(T_parent_child: np.ndarray, stamp: Time, parent: str, child: str) -> TransformStamped:
    """(4, 4) ``T_parent_child`` -> ``TransformStamped`` from ``parent`` to ``child`` (tf2's convention)."""
    x, y, z, w = quaternion_xyzw_from_rotation_np(T_parent_child[:3, :3])
    t = T_parent_child[:3, 3]
    return TransformStamped(
        header=Header(stamp=stamp, frame_id=parent), child_frame_id=child,
        transform=Transform(translation=Vector3(x=float(t[0]), y=float(t[1]), z=float(t[2])),
                            rotation=Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))))


def matrix_from_transform(transform: Transform) -> np.ndarray:
    """``geometry_msgs/Transform`` -> (4, 4) ``T_parent_child``."""
    r, t = transform.rotation, transform.translation
    return transform_matrix(rotation_from_quaternion_xyzw_np([r.x, r.y, r.z, r.w]), [t.x, t.y, t.z])


def pose_stamped(T_parent_child: np.ndarray, header: Header) -> PoseStamped:
    """(4, 4) pose -> ``PoseStamped`` with the given header (``frame_id`` = the parent)."""
    return PoseStamped(header=header, pose=pose_from_matrix(T_parent_child))


# ------------------------------------------------------------------------------------------------- odometry
def rotate_covariance(covariance: np.ndarray, R_new_old: np.ndarray) -> np.ndarray:
    """(6, 6) (position, rotation) covariance expressed in other axes: ``J C J^T`` with ``J = diag(R, R)``."""
    J = np.zeros((6, 6))
    J[:3, :3] = J[3:, 3:] = R_new_old
    return J @ covariance @ J.T


def twist_from_relative_pose(T_prev_curr: np.ndarray, dt: float) -> np.ndarray:
    """(6,) body twist (vx, vy, vz, wx, wy, wz) of a motion ``T_prev_curr`` over ``dt`` seconds (0 if dt <= 0).

    The constant twist that moves the previous frame onto the current one in ``dt`` (SE(3) logarithm over dt);
    expressed in the moving frame, as nav_msgs/Odometry wants it in ``child_frame_id``.
    """
    if not dt > 0:
        return np.zeros(6)
    return se3_log_np(T_prev_curr) / dt


def odometry_message(T_odom_child: np.ndarray, pose_covariance: np.ndarray, twist: np.ndarray,
                     twist_covariance: np.ndarray, stamp: Time, odom_frame: str, child_frame: str) -> Odometry:
    """``nav_msgs/Odometry``: pose of ``child_frame`` in ``odom_frame`` with its covariance, twist in the child."""
    message = Odometry(header=Header(stamp=stamp, frame_id=odom_frame), child_frame_id=child_frame)
    message.pose.pose = pose_from_matrix(T_odom_child)
    message.pose.covariance = np.asarray(pose_covariance, dtype=np.float64).reshape(36)
    twist = np.asarray(twist, dtype=np.float64)
    message.twist.twist = Twist(linear=Vector3(x=twist[0], y=twist[1], z=twist[2]),
                                angular=Vector3(x=twist[3], y=twist[4], z=twist[5]))
    message.twist.covariance = np.asarray(twist_covariance, dtype=np.float64).reshape(36)
    return message
