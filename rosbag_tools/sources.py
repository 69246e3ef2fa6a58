"""Camera sequences to convert into bags, read through the core's dataset readers (or rendered by its generator).

A :class:`CameraSequence` is what every ``*2bag`` command writes: intrinsics at the native size, per-frame stamps,
optional ground-truth poses (``T_world_cam`` of the optical camera), optional ground-truth depth, fixed transforms
from the dataset's calibration, and an iterator over the pixels. Indexing (file existence, counts, calibration,
association) is the readers' job, so a folder the trainer would reject is rejected here with the same message.

Frames are the readers' frames: for TUM RGB-D, the rgb frames that have a depth and ground-truth partner within the
association tolerance (TUM's ``associate.py``), their depth and pose stamped with the rgb time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from priordepth_core.data import (
    DatasetError,
    Frame,
    FrameReader,
    KittiOdometryReader,
    KittiRawReader,
    TumRgbdReader,
)
from priordepth_core.data.kitti_odometry import CAMERA_FOLDERS, camera_from_cam0
from priordepth_core.data.kitti_raw import calib_entry, read_calib_file
from priordepth_core.data.synthetic import Renderer, SequenceSpec, ensure_suite, load_manifest, make_sequence
from priordepth_core.data.synthetic.sequence import render_frames
from priordepth_core.geometry.distortion import PLUMB_BOB, LensDistortion, Undistorter

NO_DISTORTION = (0.0, 0.0, 0.0, 0.0, 0.0)

FramePixels = tuple[np.ndarray, np.ndarray | None]  # (H, W, 3) uint8 RGB, (H, W) float32 metres (0 = invalid)


@dataclass(frozen=True)
class StaticTransform:
    """A fixed transform between two frames named by role (``"camera"``, ``"velodyne"``, ``"imu"``).

    Attributes:
        parent, child: roles; the bag writer maps them to frame ids.
        T_parent_child: (4, 4) maps child-frame points into the parent frame.
    """

    parent: str
    child: str
    T_parent_child: np.ndarray


@dataclass(frozen=True)
class CameraSequence:
    """One camera's frames with what a bag needs besides pixels.

    Attributes:
        name: human-readable name (progress bars, messages).
        K: (3, 3) intrinsics at the native image size.
        stamps: (N,) seconds, increasing.
        frames: returns a fresh iterator over the N frames' ``(rgb, depth or None)`` in order.
        T_world_cam: (N, 4, 4) ground-truth camera-to-world poses, or None.
        has_depth: frames carry ground-truth depth.
        distortion: plumb_bob ``(k1, k2, p1, p2, k3)`` of the images as stored.
        static_transforms: fixed transforms from the dataset's calibration.
    """

    name: str
    K: np.ndarray
    stamps: np.ndarray
    frames: Callable[[], Iterator[FramePixels]]
    T_world_cam: np.ndarray | None = None
    has_depth: bool = False
    distortion: tuple[float, ...] = NO_DISTORTION
    static_transforms: list[StaticTransform] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.stamps)


def _from_reader(reader: FrameReader, name: str, distortion: tuple[float, ...] = NO_DISTORTION,
                 static_transforms: list[StaticTransform] | None = None) -> CameraSequence:
    """Wrap the single sequence a reader indexed. Pixels come from the reader's own frame loaders, so decoding,
    depth units and velodyne projection are exactly the trainer's."""
    frames: list[Frame] = reader.single_sequence()
    stamps = np.array([f.stamp for f in frames], dtype=np.float64)
    T_world_cam = np.stack([f.T_world_cam for f in frames]) if reader.has_poses else None

    def pixels() -> Iterator[FramePixels]:
        for frame in frames:
            # The reader decodes one frame at its native size.
            rgb = reader.load_rgb(frame)
            depth = reader.load_depth(frame) if reader.has_depth else None
            yield rgb, depth

    return CameraSequence(name=name, K=np.array(frames[0].K, dtype=np.float64), stamps=stamps, frames=pixels,
                          T_world_cam=T_world_cam, has_depth=reader.has_depth, distortion=distortion,
                          static_transforms=static_transforms or [])


# ------------------------------------------------------------------------------------------------------- TUM RGB-D

def tum_sequence(root: str | Path, max_time_difference: float = 0.02, with_depth: bool | None = None) -> CameraSequence:
    """A TUM RGB-D sequence folder (or a synthetic sequence in TUM layout) through :class:`TumRgbdReader`.

    Raises:
        DatasetError: not a TUM sequence folder, or anything the reader rejects.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: TUM RGB-D sequence folder does not exist")
    if not (root / "rgb.txt").is_file():
        raise DatasetError(f"{root}: not a TUM RGB-D sequence (no rgb.txt)")
    # The bag keeps the images as TUM stores them (image_raw) with the sensor's published distortion in CameraInfo,
    # as a camera driver would record them; readers of the bag rectify.
    reader = TumRgbdReader(root, max_time_difference=max_time_difference, with_depth=with_depth, undistort=False)
    lens = reader.sequences[0][0].distortion
    return _from_reader(reader, root.name, distortion=NO_DISTORTION if lens is None else lens.coefficients)


# ----------------------------------------------------------------------------------------------------------- KITTI

def kitti_sequence(path: str | Path, camera: int = 2, with_depth: bool | None = None,
                   image_extension: str = ".png") -> CameraSequence:
    """A KITTI raw drive folder (``<root>/<date>/<date>_drive_XXXX_sync``) or a KITTI odometry sequence folder
    (``<root>/sequences/<XX>``), told apart by their calibration files.

    Args:
        path: the drive or sequence folder.
        camera: rectified camera 2 (left colour, default) or 3 (right colour); odometry also 0 or 1 (grey).
        with_depth: raw only: ground-truth depth from the velodyne scans; None = when every frame has a scan.
        image_extension: ``.png`` as downloaded.

    Raises:
        DatasetError: neither layout, missing calibration, or anything the readers reject.
    """
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: KITTI folder does not exist")
    if (path.parent / "calib_cam_to_cam.txt").is_file() or (path / f"image_0{camera}" / "data").is_dir():
        return _kitti_raw_sequence(path, camera, with_depth, image_extension)
    if (path / "calib.txt").is_file() or (path / "times.txt").is_file() or path.parent.name == "sequences":
        return _kitti_odometry_sequence(path, camera, image_extension)
    raise DatasetError(f"{path}: neither a KITTI raw drive (image_0{camera}/data/ beside ../calib_cam_to_cam.txt) nor "
                       "a KITTI odometry sequence (sequences/<XX>/ with calib.txt and times.txt)")


def _kitti_raw_sequence(drive: Path, camera: int, with_depth: bool | None, image_extension: str) -> CameraSequence:
    if camera not in (2, 3):
        raise ValueError(f"KITTI raw has rectified colour cameras 2 and 3, got camera {camera}")
    date_dir = drive.parent
    image_dir = drive / f"image_0{camera}" / "data"
    if not (date_dir / "calib_cam_to_cam.txt").is_file():
        raise DatasetError(f"{date_dir / 'calib_cam_to_cam.txt'}: KITTI raw calibration file does not exist")
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: image folder does not exist")
    count = sum(1 for n in os.listdir(image_dir) if n.endswith(image_extension))
    if count == 0:
        raise DatasetError(f"{image_dir}: no '{image_extension}' images")
    velodyne_dir = drive / "velodyne_points" / "data"
    if with_depth is None:
        with_depth = velodyne_dir.is_dir() and all((velodyne_dir / f"{i:010d}.bin").is_file() for i in range(count))
    side = {2: "l", 3: "r"}[camera]
    with tempfile.TemporaryDirectory(prefix="kitti2bag-") as folder:
        # The raw reader indexes frames through a split file: list every frame of this one drive.
        split = Path(folder) / "drive_split.txt"
        split.write_text("".join(f"{date_dir.name}/{drive.name} {i} {side}\n" for i in range(count)))
        reader = KittiRawReader(date_dir.parent, split, image_extension=image_extension, with_depth=with_depth)
    return _from_reader(reader, drive.name, static_transforms=_kitti_raw_static_transforms(date_dir, camera))


def _kitti_raw_static_transforms(date_dir: Path, camera: int) -> list[StaticTransform]:
    """camera -> velodyne from ``calib_velo_to_cam.txt`` and the rectification, velodyne -> imu when calibrated."""
    cam_path, velo_path = date_dir / "calib_cam_to_cam.txt", date_dir / "calib_velo_to_cam.txt"
    transforms = []
    if velo_path.is_file():
        cam2cam, velo2cam = read_calib_file(cam_path), read_calib_file(velo_path)
        T_cam0_velo = _rigid(calib_entry(velo2cam, "R", 9, velo_path), calib_entry(velo2cam, "T", 3, velo_path))
        R_rect = np.eye(4)
        R_rect[:3, :3] = calib_entry(cam2cam, "R_rect_00", 9, cam_path).reshape(3, 3)
        _, T_camc_rect0 = camera_from_cam0(calib_entry(cam2cam, f"P_rect_0{camera}", 12, cam_path).reshape(3, 4))
        transforms.append(StaticTransform("camera", "velodyne", T_camc_rect0 @ R_rect @ T_cam0_velo))
        imu_path = date_dir / "calib_imu_to_velo.txt"
        if imu_path.is_file():
            imu2velo = read_calib_file(imu_path)
            transforms.append(StaticTransform("velodyne", "imu", _rigid(calib_entry(imu2velo, "R", 9, imu_path),
                                                                        calib_entry(imu2velo, "T", 3, imu_path))))
    return transforms


def _kitti_odometry_sequence(folder: Path, camera: int, image_extension: str) -> CameraSequence:
    if camera not in CAMERA_FOLDERS:
        raise ValueError(f"KITTI odometry has cameras 0-3, got camera {camera}")
    if folder.parent.name != "sequences":
        raise DatasetError(f"{folder}: a KITTI odometry sequence folder must sit in a 'sequences' folder "
                           "(<root>/sequences/<XX>, poses in <root>/poses/<XX>.txt)")
    reader = KittiOdometryReader(folder.parent.parent, [folder.name], camera=camera, image_extension=image_extension)
    calib_path = folder / "calib.txt"
    calib = read_calib_file(calib_path)
    transforms = []
    if "Tr" in calib:  # velodyne -> rectified camera 0, in the odometry benchmark's calib.txt
        T_cam0_velo = np.eye(4)
        T_cam0_velo[:3, :] = calib_entry(calib, "Tr", 12, calib_path).reshape(3, 4)
        _, T_camc_cam0 = camera_from_cam0(calib_entry(calib, f"P{camera}", 12, calib_path).reshape(3, 4))
        transforms.append(StaticTransform("camera", "velodyne", T_camc_cam0 @ T_cam0_velo))
    return _from_reader(reader, f"kitti_odometry_{folder.name}", static_transforms=transforms)


def _rigid(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = np.asarray(R).reshape(3, 3)
    T[:3, 3] = np.asarray(t).reshape(3)
    return T


# ------------------------------------------------------------------------------------------------------- synthetic

def synthetic_suite_sequence(suite: str, split: str = "test", seed: int | None = None,
                             cache: str | Path | None = None, progress: bool = True) -> CameraSequence:
    """One sequence of a named benchmark suite (generated and cached on first use), read through the TUM reader with
    the exact float depth (``depth_exact/``).

    Args:
        suite: ``driving``, ``handheld`` or ``indoor-slow``.
        split: ``train`` or ``test``.
        seed: one of the split's seeds; None = its first.
        cache: the folder holding suites (default ``$PRIORDEPTH_CACHE/suites`` or ``~/.cache/priordepth/suites``).
        progress: progress bars while the suite is generated.
    """
    root = ensure_suite(suite, root=cache, progress=progress)
    entries = load_manifest(root)["splits"].get(split)
    if entries is None:
        raise ValueError(f"suite {suite!r} has no split {split!r}; choose train or test")
    seeds = [entry["seed"] for entry in entries]
    if seed is None:
        seed = seeds[0]
    if seed not in seeds:
        raise ValueError(f"suite {suite!r} split {split!r} has seeds {seeds}, not {seed}")
    folder = root / entries[seeds.index(seed)]["path"]
    return replace(tum_sequence(folder), name=f"{suite}-{split}-seed_{seed:04d}")


def synthetic_rendered_sequence(scene: str, motion: str, frames: int, width: int, height: int, seed: int = 0,
                                fps: float | None = None) -> CameraSequence:
    """A synthetic sequence rendered on the fly (no files): exact RGB, float depth, poses and intrinsics.

    Raises:
        ValueError: a bad specification, or a camera path the generator rejects.
    """
    sequence = make_sequence(SequenceSpec(scene, motion, frames, width, height, seed, fps))

    def pixels() -> Iterator[FramePixels]:
        with Renderer(width, height) as renderer:
            for _, rgb, depth in render_frames(sequence, renderer):
                yield rgb, depth

    return CameraSequence(name=f"{scene}-{motion}-seed_{seed:04d}", K=sequence.K,
                          stamps=np.asarray(sequence.trajectory.stamps, dtype=np.float64), frames=pixels,
                          T_world_cam=sequence.trajectory.T_world_cam, has_depth=True)


def with_lens(sequence: CameraSequence, distortion: tuple[float, ...]) -> CameraSequence:
    """``sequence`` (pinhole images) as a camera with plumb_bob ``distortion`` (k1 k2 p1 p2 k3) would record it.

    Every image (and depth map, nearest) is warped by the lens model of :mod:`priordepth_core.geometry.distortion`;
    K stays the camera's, and the bag's CameraInfo carries the coefficients, so a reader that rectifies gets the
    pinhole images back. For testing undistortion end to end with exact ground truth.

    Raises:
        ValueError: the sequence is already distorted, or the coefficients are not 4 or 5 finite numbers.
    """
    if any(sequence.distortion):
        raise ValueError(f"{sequence.name}: images already carry distortion {sequence.distortion}; a lens is added "
                         "to pinhole images only")
    lens = LensDistortion(PLUMB_BOB, tuple(distortion))
    if lens.is_zero:
        return sequence

    def pixels() -> Iterator[FramePixels]:
        undistorter = None
        for rgb, depth in sequence.frames():
            if undistorter is None:
                undistorter = Undistorter(sequence.K, lens, rgb.shape[:2])
            yield (undistorter.distort_image(rgb),
                   None if depth is None else undistorter.distort_image(depth, interpolation=cv2.INTER_NEAREST))

    coefficients = lens.coefficients + (0.0,) * (5 - len(lens.coefficients))
    return replace(sequence, frames=pixels, distortion=coefficients, name=f"{sequence.name}-distorted")
