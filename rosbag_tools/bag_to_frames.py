"""A user's rosbag2 recording -> a training sequence in TUM RGB-D layout that the trainer's readers accept.

Output folder (``TumRgbdReader`` reads it; so does the trainer with ``data.kind=tum``)::

    rgb/<stamp>.png, rgb.txt           8-bit colour, "timestamp filename" lines (stamp: header time, 9 decimals)
    intrinsics.txt                     "fx fy cx cy width height" of the written images (K scaled when resized)
    depth/<stamp>.png, depth.txt       with --depth-topic: 16-bit, metres * 5000 (TUM's unit; > 13.1 m -> 0)
    depth_exact/<rgb stamp>.npy        with --depth-exact as well: float32 metres, 0 = invalid
    groundtruth.txt                    with --pose-topic: "timestamp tx ty tz qx qy qz qw", one pose per frame

Images are decoded by the core's rosbag reader (``RosbagReader``): ``rgb8``, ``bgr8``, ``mono8`` (grey copied to
three channels), ``bayer_*`` (debayered by OpenCV as cv_bridge does) and ``sensor_msgs/CompressedImage``. K comes
from the CameraInfo nearest in time to each frame and must stay the same over the kept frames (TUM layout holds one
K). Poses (PoseStamped or Odometry of the optical camera in a world frame) and depth (``32FC1`` metres or ``16UC1`` /
``mono16`` millimetres, registered to the image) are associated to images by header stamp as TUM's
``associate.py`` does; frames without a pose are dropped (the reader's rule), frames without depth keep no depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from priordepth_core.atomic_output import atomic_output, check_new_output
from priordepth_core.data import DatasetError, RosbagReader
from priordepth_core.data.sample import resize_depth_nearest, resize_image
from priordepth_core.data.synthetic.writers import depth_to_tum_png
from priordepth_core.data.trajectory_io import write_tum_trajectory
from priordepth_core.data.tum_rgbd import associate
from priordepth_core.geometry.camera import resize_intrinsics_np

from .messages import COMPRESSED_IMAGE, IMAGE, stamp_to_nanoseconds

IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
DEPTH_ENCODINGS = {"32FC1": ("<f4", 1.0), "16UC1": ("<u2", 1e-3), "mono16": ("<u2", 1e-3)}  # dtype, metres per unit
# zlib level 1: at 640x480 about 40% faster to write than level 3 for 7% larger files (PNG encoding dominates).
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]
# Two CameraInfo K differing by less than this (pixels) are the same calibration (text round-off in drivers).
K_TOLERANCE_PX = 1e-6


@dataclass
class FramesSummary:
    """What ``bag2frames`` wrote."""

    path: Path
    frames: int
    size_hw: tuple[int, int]
    K: np.ndarray
    with_depth: bool
    with_poses: bool


def open_bag(path: Path) -> AnyReader:
    """An opened ``AnyReader`` for a rosbag2 folder or file; every failure becomes a DatasetError naming the bag."""
    if not path.exists():
        raise DatasetError(f"{path}: rosbag2 does not exist")
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.LATEST))
        reader.open()
    except Exception as error:  # rosbags raises several unrelated types for unreadable or truncated bags
        raise DatasetError(f"{path}: cannot open rosbag2 ({error})") from error
    return reader


def _topics(reader: AnyReader) -> dict[str, str]:
    return {c.topic: c.msgtype for c in reader.connections}


def choose_image_topic(bag: Path, topics: dict[str, str]) -> str:
    """The bag's one Image/CompressedImage topic that is not a depth topic, or a DatasetError listing candidates."""
    candidates = sorted(t for t, kind in topics.items() if kind in IMAGE_TYPES and "depth" not in t.lower())
    if len(candidates) == 1:
        return candidates[0]
    listing = ", ".join(f"{t} ({k})" for t, k in sorted(topics.items()))
    if not candidates:
        raise DatasetError(f"{bag}: no image topic (sensor_msgs/Image or CompressedImage); topics: {listing}")
    raise DatasetError(f"{bag}: several image topics ({', '.join(candidates)}); choose one with --image-topic")


def camera_info_topic_for(image_topic: str) -> str:
    """image_transport's convention: ``/ns/image_raw`` and ``/ns/image_raw/compressed`` -> ``/ns/camera_info``."""
    base = image_topic[: -len("/compressed")] if image_topic.endswith("/compressed") else image_topic
    namespace = base.rsplit("/", 1)[0]
    return f"{namespace}/camera_info"


def _stamp_text(stamp: float) -> str:
    return f"{stamp:.9f}"


def _decimate(stamps: list[float], every: int, max_rate: float | None) -> list[int]:
    """Indices kept: every ``every``-th frame, then greedily frames at least ``1 / max_rate`` s after the last kept."""
    kept = list(range(0, len(stamps), every))
    if max_rate is None:
        return kept
    period = 1.0 / max_rate - 1e-6  # stamps rounded to microseconds must not drop frames of an exact-rate stream
    thinned = []
    for i in kept:
        if not thinned or stamps[i] - stamps[thinned[-1]] >= period:
            thinned.append(i)
    return thinned


def decode_depth(message, topic: str, bag: Path) -> np.ndarray:
    """(H, W) float32 metres, 0 = invalid, from a 32FC1 / 16UC1 / mono16 Image (any row padding or byte order)."""
    if not hasattr(message, "encoding"):
        raise DatasetError(f"{bag}: depth topic {topic!r} is a CompressedImage; only raw 32FC1, 16UC1 or mono16 "
                           "Image depth is supported")
    if message.encoding not in DEPTH_ENCODINGS:
        raise DatasetError(f"{bag}: depth topic {topic!r} has encoding {message.encoding!r}; supported: 32FC1 "
                           "(metres), 16UC1 or mono16 (millimetres)")
    dtype, metres_per_unit = DEPTH_ENCODINGS[message.encoding]
    dtype = np.dtype(dtype).newbyteorder(">" if message.is_bigendian else "<")
    height, width, step = int(message.height), int(message.width), int(message.step)
    if step < width * dtype.itemsize or step % dtype.itemsize or len(message.data) < step * height:
        raise DatasetError(f"{bag}: depth topic {topic!r}: message of {len(message.data)} bytes does not hold "
                           f"{height} rows of step {step} for {width} {message.encoding} pixels")
    rows = np.frombuffer(bytes(message.data[: step * height]), dtype=dtype).reshape(height, step // dtype.itemsize)
    depth = rows[:, :width].astype(np.float32) * np.float32(metres_per_unit)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def _write_png(path: Path, image: np.ndarray) -> None:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image, PNG_PARAMS):
        raise OSError(f"{path}: cannot write PNG")


def extract_frames(bag: str | Path, out: str | Path, image_topic: str | None = None,
                   camera_info_topic: str | None = None, pose_topic: str | None = None,
                   depth_topic: str | None = None, every: int = 1, max_rate: float | None = None,
                   size_wh: tuple[int, int] | None = None, max_time_difference: float = 0.02,
                   depth_exact: bool = False, progress: bool = True) -> FramesSummary:
    """Write the frames of one camera in a bag as a TUM-layout training sequence (see the module docstring).

    Args:
        bag: rosbag2 folder (or its ``.mcap`` / ``.db3`` file).
        out: output sequence folder; must not exist.
        image_topic: Image or CompressedImage topic; None = the bag's only non-depth image topic.
        camera_info_topic: its CameraInfo topic; None = ``<image namespace>/camera_info``.
        pose_topic: PoseStamped or Odometry topic of the camera pose (optional).
        depth_topic: depth Image topic registered to the image (optional).
        every: keep every n-th image.
        max_rate: then keep frames at most this many per second.
        size_wh: output ``(width, height)``; None = native. K is scaled with the images.
        max_time_difference: seconds, pose and depth association tolerance.
        depth_exact: also write ``depth_exact/*.npy`` (float32 metres, no quantisation, no 13.1 m limit).
        progress: show a tqdm progress bar.

    Raises:
        DatasetError: unreadable or truncated bag, missing topics (named with the bag's topic list), an image topic
            without camera_info, unsupported encodings, K changing over the kept frames, images or depth of
            inconsistent size.
        ValueError: bad arguments, or ``out`` exists.
    """
    bag, out = Path(bag), check_new_output(out)
    if every < 1:
        raise ValueError(f"every must be a positive integer, got {every}")
    if max_rate is not None and not max_rate > 0:
        raise ValueError(f"max_rate must be positive, got {max_rate}")
    if size_wh is not None and (size_wh[0] < 1 or size_wh[1] < 1):
        raise ValueError(f"size must be positive, got {size_wh}")

    reader = open_bag(bag)
    try:
        topics = _topics(reader)
    finally:
        reader.close()
    image_topic = image_topic or choose_image_topic(bag, topics)
    if camera_info_topic is None:
        camera_info_topic = camera_info_topic_for(image_topic)
        if image_topic in topics and camera_info_topic not in topics:
            raise DatasetError(f"{bag}: image topic {image_topic!r} has no camera_info topic ({camera_info_topic!r} "
                               "is not in the bag); name it with --camera-info-topic")
    if depth_topic is not None and depth_topic not in topics:
        raise DatasetError(f"{bag}: depth topic {depth_topic!r} is not in the bag; topics: {', '.join(sorted(topics))}")

    reader = RosbagReader(bag, image_topic, camera_info_topic, pose_topic=pose_topic,
                          max_pose_time_difference=max_time_difference)
    frames = reader.single_sequence()
    frames = [frames[i] for i in _decimate([f.stamp for f in frames], every, max_rate)]
    K_native = frames[0].K
    for frame in frames:
        if np.abs(frame.K - K_native).max() > K_TOLERANCE_PX:
            raise DatasetError(f"{bag}: camera_info {camera_info_topic!r} changes K at frame {frame.index} "
                               f"(stamp {frame.stamp:.6f}); a TUM-layout sequence holds one K: split the bag there")
    depth_stamps, depth_of_frame = None, {}
    if depth_topic is not None:
        depth_stamps = _depth_stamps(bag, depth_topic)
        pairs = associate(np.array([f.stamp for f in frames]), depth_stamps, max_time_difference)
        if not pairs:
            raise DatasetError(f"{bag}: no image on {image_topic!r} has a depth message on {depth_topic!r} within "
                               f"{max_time_difference} s")
        frames = [frames[i] for i, _ in pairs]  # as the TUM reader does: frames without depth are dropped
        depth_of_frame = {position: j for position, (_, j) in enumerate(pairs)}
    names = [_stamp_text(f.stamp) for f in frames]
    if len(set(names)) != len(names):
        raise DatasetError(f"{bag}: image topic {image_topic!r} has several messages with one header stamp")

    with atomic_output(out) as folder:
        (folder / "rgb").mkdir(parents=True)
        native_hw = None
        with tqdm(total=len(frames), desc=out.name, unit="frame", disable=not progress) as bar:
            for frame, name in zip(frames, names):
                # The reader's frame loader (RosbagReader.load_rgb) decodes any supported encoding at the
                # native size and checks it against its CameraInfo.
                rgb = reader.load_rgb(frame)
                native_hw = native_hw or rgb.shape[:2]
                if size_wh is not None:
                    rgb = resize_image(rgb, (size_wh[1], size_wh[0]))
                _write_png(folder / "rgb" / f"{name}.png", rgb)
                bar.update(1)
        out_hw = native_hw if size_wh is None else (size_wh[1], size_wh[0])
        K = resize_intrinsics_np(K_native, native_hw, out_hw)
        _write_list(folder / "rgb.txt", "color images", bag, [(n, f"rgb/{n}.png") for n in names])
        (folder / "intrinsics.txt").write_text(
            "# fx fy cx cy width height (pinhole; from " + camera_info_topic + ")\n"
            + " ".join(repr(float(v)) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2])) + f" {out_hw[1]} {out_hw[0]}\n")
        if depth_topic is not None:
            _write_depth(bag, folder, depth_topic, depth_stamps, {j: names[i] for i, j in depth_of_frame.items()},
                         native_hw, out_hw, depth_exact)
        if pose_topic is not None:
            write_tum_trajectory(folder / "groundtruth.txt", np.array([f.stamp for f in frames]),
                                 np.stack([f.T_world_cam for f in frames]))
    return FramesSummary(path=out, frames=len(frames), size_hw=tuple(out_hw), K=K, with_depth=depth_topic is not None,
                         with_poses=pose_topic is not None)


def _write_list(path: Path, what: str, bag: Path, entries: list[tuple[str, str]]) -> None:
    header = f"# {what}\n# file: '{bag.name}'\n# timestamp filename\n"
    path.write_text(header + "".join(f"{stamp} {name}\n" for stamp, name in entries))


def _depth_connections(reader: AnyReader, bag: Path, topic: str) -> list:
    connections = [c for c in reader.connections if c.topic == topic]
    wrong = [c.msgtype for c in connections if c.msgtype not in IMAGE_TYPES]
    if wrong:
        raise DatasetError(f"{bag}: depth topic {topic!r} has type {wrong[0]}, expected sensor_msgs/msg/Image")
    return connections


def _depth_stamps(bag: Path, topic: str) -> np.ndarray:
    """(M,) header stamps in seconds of the depth topic's messages, in bag order."""
    reader = open_bag(bag)
    try:
        connections = _depth_connections(reader, bag, topic)
        return np.array([stamp_to_nanoseconds(reader.deserialize(raw, c.msgtype).header.stamp) * 1e-9
                         for c, _, raw in reader.messages(connections=connections)])
    finally:
        reader.close()


def _write_depth(bag: Path, folder: Path, topic: str, stamps: np.ndarray, rgb_name_of: dict[int, str],
                 native_hw: tuple[int, int], out_hw: tuple[int, int], depth_exact: bool) -> None:
    """Write the depth messages associated to kept frames (message index -> rgb frame name), in one pass."""
    (folder / "depth").mkdir()
    if depth_exact:
        (folder / "depth_exact").mkdir()
    entries = []
    reader = open_bag(bag)
    try:
        for j, (c, _, raw) in enumerate(reader.messages(connections=_depth_connections(reader, bag, topic))):
            if j not in rgb_name_of:
                continue
            depth = decode_depth(reader.deserialize(raw, c.msgtype), topic, bag)
            if depth.shape != native_hw:
                raise DatasetError(f"{bag}: depth topic {topic!r} is {depth.shape[1]}x{depth.shape[0]} but the images "
                                   f"are {native_hw[1]}x{native_hw[0]}; depth must be registered to the image")
            depth = resize_depth_nearest(depth, out_hw)
            name = _stamp_text(stamps[j])
            _write_png(folder / "depth" / f"{name}.png", depth_to_tum_png(depth))
            entries.append((name, f"depth/{name}.png"))
            if depth_exact:
                np.save(folder / "depth_exact" / f"{rgb_name_of[j]}.npy", depth.astype(np.float32))
    finally:
        reader.close()
    _write_list(folder / "depth.txt", "depth maps", bag, entries)
