"""Frames from a rosbag2 recording (sqlite3 or mcap) through ``rosbags``, without a ROS installation.

One image topic (``sensor_msgs/msg/Image`` in any encoding ``rosbags-image`` converts, or
``sensor_msgs/msg/CompressedImage``) and its ``sensor_msgs/msg/CameraInfo`` topic make one sequence, in bag order.
Each frame takes K from the CameraInfo message nearest in header time (cameras rarely change it, but zoom lenses and
re-calibration do). Lens distortion (``CameraInfo.distortion_model`` and ``d``: plumb_bob, rational_polynomial or
equidistant) is removed as frames load, by :mod:`priordepth_core.geometry.distortion` (maps built once per camera),
and each frame's K is then the rectified camera's: ``P[:, :3]`` as ``image_proc`` does, or K where P is empty. A
rectified topic (its last name starting with ``image_rect``, REP 104) is not undistorted again: its K is ``P[:, :3]``.
``undistort=False`` keeps the raw pixels with the raw K and records the lens in ``Frame.distortion``.

An optional pose topic (``geometry_msgs/msg/PoseStamped`` or ``nav_msgs/msg/Odometry``, the camera's optical
frame in a world frame) gives poses, associated to images by header stamp as TUM's ``associate.py`` does (greedy
nearest within ``max_pose_time_difference``); images without a pose are then dropped.

Frames are decoded on demand: the index stores each image's bag time, and loading seeks to it (the sqlite3 index or
the mcap chunk index), so memory stays flat for long recordings. ``cache_frames=True`` also keeps every decoded
frame (uint8, native size) in memory after its first use, per process, for small bags read many times.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.image import ImageError, message_to_cvimage
from rosbags.typesys import Stores, get_typestore

from ..geometry.distortion import LensDistortion, Undistorter, UndistorterCache
from ..geometry.se3 import rotation_from_quaternion_xyzw_np
from .errors import DatasetError
from .frames import Frame, FrameReader, configured_path, nearest_index
from .tum_rgbd import associate

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "nav_msgs/msg/Odometry")


def is_rectified_topic(topic: str) -> bool:
    """The topic carries rectified images by ROS naming (``.../image_rect``, ``image_rect_color``, REP 104)."""
    return topic.rstrip("/").split("/")[-1].startswith("image_rect")


def _stamp_seconds(header: Any) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def _pose_to_matrix(pose: Any) -> np.ndarray:
    q = pose.orientation
    T = np.eye(4)
    T[:3, :3] = rotation_from_quaternion_xyzw_np(np.array([q.x, q.y, q.z, q.w]))  # ROS order (x, y, z, w)
    T[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    return T


def _open_reader(path: Path) -> AnyReader:
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.LATEST))
        reader.open()
    except Exception as error:  # rosbags raises several unrelated types for unreadable bags
        raise DatasetError(f"{path}: cannot open rosbag2 ({error})") from error
    return reader


def _connections(reader: AnyReader, path: Path, topic: str, types: tuple[str, ...], role: str) -> list:
    connections = [c for c in reader.connections if c.topic == topic]
    if not connections:
        available = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
        raise DatasetError(f"{path}: {role} topic {topic!r} is not in the bag; topics: {', '.join(available)}")
    wrong = [c.msgtype for c in connections if c.msgtype not in types]
    if wrong:
        raise DatasetError(f"{path}: {role} topic {topic!r} has type {wrong[0]}, expected one of {', '.join(types)}")
    return connections


# Bytes per pixel of the raw encodings whose rows may be padded (sensor_msgs/Image.step > width * bytes per pixel).
_BYTES_PER_PIXEL = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2, "8UC1": 1, "8UC3": 3,
                    "16UC1": 2, "32FC1": 4, "bayer_rggb8": 1, "bayer_bggr8": 1, "bayer_gbrg8": 1, "bayer_grbg8": 1}


def _without_row_padding(msg: Any) -> Any:
    """A raw Image whose rows carry padding (``step`` > width x bytes per pixel) with the padding removed.

    rosbags-image decodes ``data`` as ``height x width`` pixels and ignores ``step``, which shears padded rows.
    """
    bytes_per_pixel = _BYTES_PER_PIXEL.get(getattr(msg, "encoding", None))
    if bytes_per_pixel is None or not hasattr(msg, "step"):
        return msg
    row_bytes = int(msg.width) * bytes_per_pixel
    if int(msg.step) <= row_bytes:
        return msg
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8)[: int(msg.height) * int(msg.step)]
    unpadded = rows.reshape(int(msg.height), int(msg.step))[:, :row_bytes].reshape(-1)
    return dataclasses.replace(msg, step=row_bytes, data=np.ascontiguousarray(unpadded))


class RosbagReader(FrameReader):
    """Frames of one image topic of a rosbag2 (no depth), one sequence in bag order.

    Args:
        path: the rosbag2 folder (with ``metadata.yaml``) or a single ``.mcap`` / ``.db3`` file.
        image_topic: Image or CompressedImage topic.
        camera_info_topic: its CameraInfo topic.
        pose_topic: optional PoseStamped / Odometry topic of the camera pose in a world frame.
        max_pose_time_difference: pose association tolerance in seconds.
        cache_frames: keep decoded frames in memory after first use.
        undistort: return rectified pixels with the rectified K (default); False: the raw pixels, raw K and the lens
            in ``Frame.distortion``.
        rectified: the image topic is already rectified (K = ``P[:, :3]``, no undistortion); None = when the topic's
            last name starts with ``image_rect``.

    Raises:
        DatasetError: an unreadable bag; a topic missing or of the wrong type (the message lists the bag's topics);
            no CameraInfo message or one with an all-zero K or an unsupported distortion model; a first frame that
            cannot be decoded or whose size differs from its CameraInfo; no image with a pose.
    """

    # A user's recording has no held-out ground truth to test on.
    held_out_test = False

    def __init__(self, path: str | Path, image_topic: str, camera_info_topic: str, pose_topic: str | None = None,
                 max_pose_time_difference: float = 0.02, cache_frames: bool = False, undistort: bool = True,
                 rectified: bool | None = None):
        self.path = Path(path)
        self.rectified = is_rectified_topic(image_topic) if rectified is None else rectified
        if not self.path.exists():
            raise DatasetError(f"{self.path}: rosbag2 does not exist")
        self.image_topic = image_topic
        self.cache_frames = cache_frames
        self._cache: dict[int, np.ndarray] = {}
        self._reader: AnyReader | None = None
        self._reader_pid: int | None = None

        reader = _open_reader(self.path)
        try:
            image_connections = _connections(reader, self.path, image_topic, IMAGE_TYPES, "image")
            info_connections = _connections(reader, self.path, camera_info_topic, (CAMERA_INFO_TYPE,), "camera_info")
            infos = self._read_camera_infos(reader, info_connections, camera_info_topic)
            images = [(t, _stamp_seconds(reader.deserialize(raw, c.msgtype).header))
                      for c, t, raw in reader.messages(connections=image_connections)]
            poses = None
            if pose_topic is not None:
                pose_connections = _connections(reader, self.path, pose_topic, POSE_TYPES, "pose")
                poses = self._read_poses(reader, pose_connections)
        finally:
            reader.close()
        if not images:
            raise DatasetError(f"{self.path}: image topic {image_topic!r} has no messages")

        locators, ordinal = [], {}
        for bag_time, _ in images:  # messages sharing a bag time are told apart by their order
            ordinal[bag_time] = ordinal.get(bag_time, -1) + 1
            locators.append((bag_time, ordinal[bag_time]))
        keep = list(range(len(images)))
        pose_of: dict[int, np.ndarray] = {}
        if poses is not None:
            pairs = associate(np.array([s for _, s in images]), poses[0], max_pose_time_difference)
            pose_of = {i: poses[1][j] for i, j in pairs}
            keep = [i for i, _ in pairs]
            if not keep:
                raise DatasetError(f"{self.path}: no image on {image_topic!r} has a pose on {pose_topic!r} within "
                                   f"{max_pose_time_difference} s")
        info_stamps = [info[0] for info in infos]
        self._info_hw: list[tuple[int, int]] = []
        self._undistorters: list[Undistorter | None] = []  # per frame; None: the pixels load as stored
        undistorters = UndistorterCache()
        frames = []
        for position, i in enumerate(keep):
            _, K, size_hw_info, distortion, P = infos[nearest_index(info_stamps, images[i][1])]
            self._info_hw.append(size_hw_info)
            undistorter = None
            if self.rectified:
                K, distortion = (P if P is not None else K), None
            elif undistort:
                try:
                    undistorter = undistorters.get(K, distortion, size_hw_info, P)
                except ValueError as error:
                    raise DatasetError(f"{self.path}: camera_info topic {camera_info_topic!r}: {error}") from error
                K, distortion = undistorter.rectified_K, None
                undistorter = None if undistorter.is_identity else undistorter
            self._undistorters.append(undistorter)
            frames.append(Frame(sequence=f"{self.path.name}:{image_topic}", index=position, stamp=images[i][1],
                                image=locators[i], K=K, T_world_cam=pose_of.get(i), distortion=distortion))
        self._image_connection_ids = {c.id for c in image_connections}
        super().__init__([frames], has_depth=False, has_poses=poses is not None, source=str(self.path))
        self.load_rgb(frames[0])  # fail at construction on an undecodable topic or a CameraInfo size mismatch

    @classmethod
    def for_split(cls, data: Any, split: str) -> list[FrameReader]:
        """The bag ``data.path``'s ``data.image_topic`` with ``data.camera_info_topic``, whichever the split."""
        return [cls(configured_path(data), data.image_topic, data.camera_info_topic)]

    def _read_camera_infos(self, reader: AnyReader, connections: list, topic: str):
        infos = []
        for c, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, c.msgtype)
            K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
            if K[0, 0] <= 0 or K[1, 1] <= 0:
                raise DatasetError(f"{self.path}: camera_info topic {topic!r} has an uncalibrated K (fx or fy <= 0)")
            try:
                distortion = LensDistortion.from_camera_info(msg.distortion_model, msg.d)
            except ValueError as error:
                raise DatasetError(f"{self.path}: camera_info topic {topic!r}: {error}") from error
            P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)[:, :3]
            # An uncalibrated driver leaves P zero: the rectified camera is then K itself.
            P = P.copy() if np.all(np.isfinite(P)) and P[0, 0] > 0 and P[1, 1] > 0 and P[2, 2] == 1 else None
            infos.append((_stamp_seconds(msg.header), K, (int(msg.height), int(msg.width)), distortion, P))
        if not infos:
            raise DatasetError(f"{self.path}: camera_info topic {topic!r} has no messages")
        infos.sort(key=lambda info: info[0])
        return infos

    @staticmethod
    def _read_poses(reader: AnyReader, connections: list) -> tuple[np.ndarray, list[np.ndarray]]:
        stamps, poses = [], []
        for c, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, c.msgtype)
            pose = msg.pose.pose if c.msgtype == "nav_msgs/msg/Odometry" else msg.pose
            stamps.append(_stamp_seconds(msg.header))
            poses.append(_pose_to_matrix(pose))
        return np.array(stamps), poses

    def __getstate__(self) -> dict[str, Any]:
        # An open bag handle cannot cross into DataLoader worker processes; each opens its own.
        state = self.__dict__.copy()
        state["_reader"], state["_reader_pid"], state["_cache"] = None, None, {}
        return state

    def _open(self) -> AnyReader:
        if self._reader is None or self._reader_pid != os.getpid():
            self._reader = _open_reader(self.path)
            self._reader_pid = os.getpid()
        return self._reader

    def undistorter_of(self, frame: Frame) -> Undistorter | None:
        return self._undistorters[frame.index]

    def load_rgb(self, frame: Frame) -> np.ndarray:
        if frame.index in self._cache:
            return self._cache[frame.index]
        bag_time, ordinal = frame.image
        reader = self._open()
        connections = [c for c in reader.connections if c.id in self._image_connection_ids]
        messages = [(c, raw) for c, _, raw in reader.messages(connections=connections, start=bag_time,
                                                               stop=bag_time + 1)]
        where = f"{self.path}: image topic {self.image_topic!r} at bag time {bag_time} ns"
        if ordinal >= len(messages):
            raise DatasetError(f"{where}: message not found (bag changed since indexing?)")
        connection, raw = messages[ordinal]
        try:
            image = message_to_cvimage(_without_row_padding(reader.deserialize(raw, connection.msgtype)), "rgb8")
        except (ImageError, ValueError, TypeError) as error:
            raise DatasetError(f"{where}: cannot decode image ({error})") from error
        if image is None or image.ndim != 3 or image.shape[2] != 3:
            raise DatasetError(f"{where}: cannot decode image to RGB")
        expected_hw = self._info_hw[frame.index]
        if image.shape[:2] != expected_hw:
            raise DatasetError(f"{where}: image is {image.shape[1]}x{image.shape[0]} but its CameraInfo is for "
                               f"{expected_hw[1]}x{expected_hw[0]}")
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if self._undistorters[frame.index] is not None:
            image = self._undistorters[frame.index].rectify_image(image)
        if self.cache_frames:
            self._cache[frame.index] = image
        return image
