"""Input sequences of the offline runner, read through the core's dataset readers at their native resolution.

``--input`` may be:

- a TUM RGB-D sequence folder (``rgb.txt``; the synthetic generator's sequences use the same layout, with exact
  depth in ``depth_exact/``);
- a KITTI odometry sequence folder (``<root>/sequences/<XX>``, poses from ``<root>/poses/<XX>.txt`` when present);
- a KITTI raw drive folder (``<root>/<date>/<date>_drive_XXXX_sync``, velodyne depth when every scan is there);
- a rosbag2 (folder with ``metadata.yaml``, or one ``.mcap`` / ``.db3`` file) with an Image/CompressedImage topic,
  its CameraInfo and optionally a pose topic (PoseStamped/Odometry) as ground truth;
- ``suite:NAME[:SPLIT[:SEED]]``: one sequence of a named synthetic benchmark suite (generated and cached on first use),
  e.g. ``suite:driving:test:900``.

Frames are the readers' plain frames, decoded by the readers' own ``load_rgb`` / ``load_depth`` at their native size,
so decoding, depth units and association are exactly the trainer's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader

from ..data import DatasetError, Frame, FrameReader, KittiOdometryReader, KittiRawReader, RosbagReader, TumRgbdReader
from ..data.synthetic import SUITES, ensure_suite, load_manifest

ROSBAG_SUFFIXES = (".mcap", ".db3")
DEFAULT_IMAGE_TOPIC = "/camera/image"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
# Ground-truth pose topic written by rosbag_tools; used automatically when the bag has it.
DEFAULT_POSE_TOPIC = "/ground_truth/odometry"


@dataclass
class FrameData:
    """One input frame: pixels at the native size, intrinsics, time and whatever ground truth exists."""

    index: int
    stamp: float
    rgb: np.ndarray  # (H, W, 3) uint8
    K: np.ndarray  # (3, 3) float64
    depth: np.ndarray | None  # (H, W) float32 metres, 0 = invalid
    T_world_cam: np.ndarray | None  # (4, 4)


@dataclass
class InputSequence:
    """A sequence to run: ``len()`` frames, iterated in time order."""

    name: str
    kind: str
    reader: FrameReader
    frames: list[Frame]

    @property
    def has_depth(self) -> bool:
        return self.reader.has_depth

    @property
    def has_poses(self) -> bool:
        return self.reader.has_poses

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[FrameData]:
        for position, frame in enumerate(self.frames):
            depth = self.reader.load_depth(frame) if self.has_depth else None
            yield FrameData(position, float(frame.stamp), self.reader.load_rgb(frame),
                            np.asarray(frame.K, dtype=np.float64), depth,
                            None if frame.T_world_cam is None else np.asarray(frame.T_world_cam, dtype=np.float64))

    def limit(self, max_frames: int = 0, every: int = 1) -> InputSequence:
        """A copy with every ``every``-th frame, at most ``max_frames`` (0 = all)."""
        frames = self.frames[::every]
        return InputSequence(self.name, self.kind, self.reader, frames[:max_frames] if max_frames else frames)


def _single(reader: FrameReader, name: str, kind: str) -> InputSequence:
    return InputSequence(name, kind, reader, reader.single_sequence())


def _suite(spec: str) -> InputSequence:
    parts = spec.split(":")[1:]
    if not 1 <= len(parts) <= 3 or not parts[0]:
        raise ValueError(f"--input {spec!r}: use suite:NAME[:SPLIT[:SEED]], e.g. suite:driving:test:900")
    name, split = parts[0], parts[1] if len(parts) > 1 else "test"
    if name not in SUITES:
        raise ValueError(f"--input {spec!r}: unknown suite {name!r}; choose one of {', '.join(SUITES)}")
    root = ensure_suite(name, progress=True)
    entries = load_manifest(root)["splits"].get(split)
    if entries is None:
        raise ValueError(f"--input {spec!r}: suite {name!r} has no split {split!r} (train or test)")
    seeds = [entry["seed"] for entry in entries]
    try:
        seed = int(parts[2]) if len(parts) > 2 else seeds[0]
    except ValueError:
        raise ValueError(f"--input {spec!r}: the seed must be an integer, one of {seeds}") from None
    if seed not in seeds:
        raise ValueError(f"--input {spec!r}: suite {name!r} split {split!r} has seeds {seeds}, not {seed}")
    folder = root / entries[seeds.index(seed)]["path"]
    return _single(TumRgbdReader(folder), f"{name}-{split}-seed_{seed:04d}", "suite")


def _kitti_raw(drive: Path) -> InputSequence:
    date_dir = drive.parent
    image_dir = drive / "image_02" / "data"
    count = sum(1 for p in image_dir.iterdir() if p.suffix == ".png")
    if count < 2:
        raise DatasetError(f"{image_dir}: needs at least two '.png' images, found {count}")
    velodyne = drive / "velodyne_points" / "data"
    with_depth = velodyne.is_dir() and all((velodyne / f"{i:010d}.bin").is_file() for i in range(count))
    with tempfile.TemporaryDirectory(prefix="priordepth-infer-") as folder:
        # The raw reader indexes frames through a split file: list every frame of this one drive.
        split = Path(folder) / "drive_split.txt"
        split.write_text("".join(f"{date_dir.name}/{drive.name} {i} l\n" for i in range(count)))
        reader = KittiRawReader(date_dir.parent, split, with_depth=with_depth)
    return _single(reader, drive.name, "kitti_raw")


def _rosbag(path: Path, image_topic: str, camera_info_topic: str, pose_topic: str | None) -> InputSequence:
    if pose_topic is None:
        try:
            with AnyReader([path]) as reader:
                topics = {c.topic for c in reader.connections}
        except Exception as exc:  # rosbags raises its own error types for unreadable bags
            raise DatasetError(f"{path}: cannot read rosbag2 ({exc})") from exc
        pose_topic = DEFAULT_POSE_TOPIC if DEFAULT_POSE_TOPIC in topics else None
    reader = RosbagReader(path, image_topic, camera_info_topic, pose_topic=pose_topic)
    return _single(reader, path.stem if path.is_file() else path.name, "rosbag")


def open_input(spec: str, image_topic: str = DEFAULT_IMAGE_TOPIC, camera_info_topic: str = DEFAULT_CAMERA_INFO_TOPIC,
               pose_topic: str | None = None) -> InputSequence:
    """Open ``--input`` (see the module docstring).

    Raises:
        DatasetError: the path is none of the supported layouts or a reader rejects it (the message says why).
        ValueError: a malformed ``suite:`` specification.
    """
    if spec.startswith("suite:"):
        return _suite(spec)
    path = Path(spec)
    if not path.exists():
        raise DatasetError(f"{path}: input does not exist")
    if (path.is_file() and path.suffix in ROSBAG_SUFFIXES) or (path / "metadata.yaml").is_file():
        return _rosbag(path, image_topic, camera_info_topic, pose_topic)
    if path.is_dir() and (path / "rgb.txt").is_file():
        return _single(TumRgbdReader(path), path.name, "tum")
    if path.is_dir() and (path.parent / "calib_cam_to_cam.txt").is_file() and (path / "image_02" / "data").is_dir():
        return _kitti_raw(path)
    if path.is_dir() and path.parent.name == "sequences" and (path / "calib.txt").is_file():
        reader = KittiOdometryReader(path.parent.parent, [path.name])
        return _single(reader, f"kitti_odometry_{path.name}", "kitti_odometry")
    raise DatasetError(f"{path}: not a supported input: a TUM RGB-D folder (rgb.txt), a KITTI odometry sequence "
                       "(sequences/<XX>/calib.txt), a KITTI raw drive (image_02/data beside ../calib_cam_to_cam.txt), "
                       "a rosbag2 (metadata.yaml, .mcap, .db3) or suite:NAME[:SPLIT[:SEED]]")
