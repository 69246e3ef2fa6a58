"""Write a :class:`~rosbag_tools.sources.CameraSequence` as a rosbag2 (mcap or sqlite3) with ``rosbags``.

Per frame, all stamped with the frame's time (header stamp = bag receive time):

=============================  ==========================  ===================================================
topic (default)                type                        content
=============================  ==========================  ===================================================
``/camera/camera_info``        sensor_msgs/CameraInfo      K, plumb_bob D, R = I, P = [K | 0], size (REP 104)
``/camera/image``              sensor_msgs/Image           ``rgb8``, frame ``camera_optical``
``/ground_truth/depth``        sensor_msgs/Image           ``32FC1`` metres, NaN = no measurement (REP 118)
``/tf``                        tf2_msgs/TFMessage          ``world`` -> ``gt_camera``: the ground-truth pose
``/ground_truth/odometry``     nav_msgs/Odometry           the same pose, twist by finite differences
=============================  ==========================  ===================================================

plus, once at the first stamp, ``/tf_static`` (offered transient-local, as tf2's static broadcaster does) with the
dataset's fixed transforms (KITTI: ``camera_optical`` -> ``velodyne`` [-> ``imu``]). Depth, pose and static topics
exist only when the dataset has them. The ground-truth camera is a frame of its own (``gt_camera``), so it never
clashes with the ``odom -> camera`` transform an odometry node publishes for the same camera.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from tqdm import tqdm

from priordepth_core.atomic_output import atomic_output, check_new_output

from . import messages
from .sources import CameraSequence

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# rclcpp's "infinite" duration as rosbag2 records it in offered QoS profiles.
_INFINITE = QosTime(sec=9223372036, nsec=854775807)


def _qos(durability: QosDurability, depth: int) -> Qos:
    return Qos(history=QosHistory.KEEP_LAST, depth=depth, reliability=QosReliability.RELIABLE,
               durability=durability, deadline=_INFINITE, lifespan=_INFINITE, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=_INFINITE, avoid_ros_namespace_conventions=False)


SENSOR_QOS = _qos(QosDurability.VOLATILE, 10)
STATIC_TF_QOS = _qos(QosDurability.TRANSIENT_LOCAL, 1)


@dataclass(frozen=True)
class TopicNames:
    """Topics a converted bag uses (command-line options of the same names override them)."""

    image: str = "/camera/image"
    camera_info: str = "/camera/camera_info"
    depth: str = "/ground_truth/depth"
    odometry: str = "/ground_truth/odometry"
    tf: str = "/tf"
    tf_static: str = "/tf_static"


@dataclass(frozen=True)
class FrameNames:
    """TF frame ids: the camera's optical frame, the world of the ground truth, and the ground-truth camera."""

    camera: str = "camera_optical"
    world: str = "world"
    ground_truth: str = "gt_camera"
    velodyne: str = "velodyne"
    imu: str = "imu"

    def of_role(self, role: str) -> str:
        return {"camera": self.camera, "velodyne": self.velodyne, "imu": self.imu}[role]


@dataclass
class BagSummary:
    """What a conversion wrote: the bag folder, its storage, frame count and per-topic message counts."""

    path: Path
    storage: str
    frames: int
    counts: dict[str, int] = field(default_factory=dict)


def write_bag(sequence: CameraSequence, out: str | Path, storage: str = "mcap", topics: TopicNames = TopicNames(),
              frames: FrameNames = FrameNames(), time_offset: float = 0.0, compress: bool = False,
              progress: bool = True) -> BagSummary:
    """Write ``sequence`` as a rosbag2 folder ``out`` (atomically: nothing is left at ``out`` on failure).

    Args:
        sequence: from :mod:`rosbag_tools.sources`.
        out: the bag folder to create; must not exist.
        storage: ``"mcap"`` or ``"sqlite3"``.
        topics, frames: topic names and frame ids.
        time_offset: seconds added to every stamp (e.g. to move sequences stamped from 0 to a later time).
        compress: mcap only: zstd-compressed chunks (the mcap storage's own compression, which ``ros2 bag`` and
            every mcap reader decode transparently).
        progress: show a tqdm progress bar.

    Raises:
        ValueError: unknown storage, ``out`` exists, stamps not increasing or negative after the offset, or frames
            whose size or depth shape is inconsistent (named by frame index).
        DatasetError: a frame the reader cannot load (named by file).
    """
    if storage not in STORAGES:
        raise ValueError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")
    if compress and storage != "mcap":
        raise ValueError("compression is offered for mcap storage only (zstd chunks); use --storage mcap")
    out = check_new_output(out)
    if len(sequence) == 0:
        raise ValueError(f"{sequence.name}: the sequence has no frames")
    stamps_s = sequence.stamps + time_offset
    if np.any(np.diff(stamps_s) <= 0):
        bad = int(np.argmin(np.diff(stamps_s))) + 1
        raise ValueError(f"{sequence.name}: frame stamps must increase; frame {bad} ({stamps_s[bad]:.9f} s) does not")
    if stamps_s[0] < 0:
        raise ValueError(f"{sequence.name}: first stamp {stamps_s[0]:.9f} s is negative; use a larger time offset")
    stamps_ns = [messages.seconds_to_nanoseconds(s) for s in stamps_s]

    summary = BagSummary(path=out, storage=storage, frames=len(sequence))
    with atomic_output(out) as staging:
        writer = Writer(staging, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
        if compress:
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        writer.open()
        try:
            _write_messages(_BagTopics(writer, summary), sequence, stamps_ns, stamps_s, topics, frames, progress,
                            out.name)
        except BaseException:
            with contextlib.suppress(Exception):  # the staging folder is deleted anyway; keep the first error
                writer.close()
            raise
        writer.close()  # writes metadata.yaml
    return summary


class _BagTopics:
    """Connections of an open writer by topic, counting what is written."""

    def __init__(self, writer: Writer, summary: BagSummary):
        self.writer = writer
        self.summary = summary
        self.connections = {}

    def add(self, topic: str, msgtype: str, qos: Qos = SENSOR_QOS) -> None:
        self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=messages.TYPESTORE,
                                                             offered_qos_profiles=[qos])

    def write(self, topic: str, stamp_ns: int, message, msgtype: str) -> None:
        self.writer.write(self.connections[topic], stamp_ns, messages.serialize(message, msgtype))
        self.summary.counts[topic] = self.summary.counts.get(topic, 0) + 1


def _write_messages(bag: _BagTopics, sequence: CameraSequence, stamps_ns: list[int], stamps_s: np.ndarray,
                    topics: TopicNames, frames: FrameNames, progress: bool, description: str) -> None:
    if sequence.static_transforms:
        bag.add(topics.tf_static, messages.TF_MESSAGE, STATIC_TF_QOS)
        static = [messages.transform_stamped(stamps_ns[0], frames.of_role(t.parent), frames.of_role(t.child),
                                             t.T_parent_child) for t in sequence.static_transforms]
        bag.write(topics.tf_static, stamps_ns[0], messages.tf_message(static), messages.TF_MESSAGE)
    bag.add(topics.camera_info, messages.CAMERA_INFO)
    bag.add(topics.image, messages.IMAGE)
    if sequence.has_depth:
        bag.add(topics.depth, messages.IMAGE)
    velocities = None
    if sequence.T_world_cam is not None:
        bag.add(topics.tf, messages.TF_MESSAGE)
        bag.add(topics.odometry, messages.ODOMETRY)
        velocities = messages.body_velocities(stamps_s, sequence.T_world_cam)

    size_hw = None
    written = 0
    with tqdm(total=len(sequence), desc=description, unit="frame", disable=not progress) as bar:
        for index, (rgb, depth) in enumerate(sequence.frames()):
            if index >= len(sequence):
                raise ValueError(f"{sequence.name}: more frames than stamps ({len(sequence)})")
            stamp_ns = stamps_ns[index]
            if size_hw is None:
                size_hw = rgb.shape[:2]
            elif rgb.shape[:2] != size_hw:
                raise ValueError(f"{sequence.name}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the first frame "
                                 f"{size_hw[1]}x{size_hw[0]}")
            info = messages.camera_info(stamp_ns, frames.camera, sequence.K, size_hw, sequence.distortion)
            bag.write(topics.camera_info, stamp_ns, info, messages.CAMERA_INFO)
            bag.write(topics.image, stamp_ns, messages.image_rgb8(stamp_ns, frames.camera, rgb), messages.IMAGE)
            if sequence.has_depth:
                if depth is None or depth.shape != size_hw:
                    raise ValueError(f"{sequence.name}: frame {index} has no depth map of its image's size")
                bag.write(topics.depth, stamp_ns, messages.image_depth_32fc1(stamp_ns, frames.camera, depth),
                          messages.IMAGE)
            if velocities is not None:
                T_world_cam = sequence.T_world_cam[index]
                pose = messages.transform_stamped(stamp_ns, frames.world, frames.ground_truth, T_world_cam)
                bag.write(topics.tf, stamp_ns, messages.tf_message([pose]), messages.TF_MESSAGE)
                odometry = messages.odometry(stamp_ns, frames.world, frames.ground_truth, T_world_cam,
                                             velocities[0][index], velocities[1][index])
                bag.write(topics.odometry, stamp_ns, odometry, messages.ODOMETRY)
            written += 1
            bar.update(1)
    if written != len(sequence):
        raise ValueError(f"{sequence.name}: {written} frames decoded but {len(sequence)} stamps indexed")
