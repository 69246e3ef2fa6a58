"""KITTI raw (Geiger et al. 2013) through Eigen/Zhou split files, with velodyne ground truth as MonoDepth2 builds it.

Layout (as downloaded, ``*_sync`` drives)::

    <root>/<date>/calib_cam_to_cam.txt            P_rect_02, P_rect_03, R_rect_00, S_rect_02 (+ calib_time)
    <root>/<date>/calib_velo_to_cam.txt           R, T (velodyne -> unrectified camera 0)
    <root>/<date>/<drive>/image_02/data/0000000000.png   left colour camera (image_03: right)
    <root>/<date>/<drive>/image_02/timestamps.txt        optional: "2011-09-26 13:02:25.964389445" per frame
    <root>/<date>/<drive>/velodyne_points/data/0000000000.bin   float32 (x, y, z, reflectance) per point

A split file line is ``<date>/<drive> <frame> l|r`` (MonoDepth2's ``splits/eigen_zhou/train_files.txt``). Each
(drive, side) pair is one sequence; its frames are every image in the drive folder, so context frames are the
neighbouring frame numbers, and targets whose context falls outside the drive are skipped.

KITTI raw has no camera poses (only GPS/IMU in ``oxts``, not read here): samples have no pose keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError
from .frames import Frame, FrameReader, configured_path

SIDE_TO_CAMERA = {"l": 2, "r": 3}
FRAME_PERIOD_S = 0.1  # the 10 Hz of KITTI raw, used when timestamps.txt is absent


def read_calib_file(path: Path) -> dict[str, np.ndarray]:
    """Parse a KITTI ``key: v1 v2 ...`` calibration file; non-numeric entries (``calib_time``) are skipped.

    Raises:
        DatasetError: if the file is missing or a line has no ``key:``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: calibration file does not exist")
    calib: dict[str, np.ndarray] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise DatasetError(f"{path}:{number}: expected 'key: values', got {line.strip()!r}")
        try:
            calib[key.strip()] = np.array([float(v) for v in value.split()], dtype=np.float64)
        except ValueError:
            continue  # calib_time and other text fields
    return calib


def calib_entry(calib: dict[str, np.ndarray], key: str, size: int, path: Path) -> np.ndarray:
    """``calib[key]`` checked to hold ``size`` numbers; a missing or wrong-sized entry names ``path`` and ``key``."""
    if key not in calib:
        raise DatasetError(f"{path}: missing calibration entry {key!r}")
    if calib[key].size != size:
        raise DatasetError(f"{path}: {key} has {calib[key].size} values, expected {size}")
    return calib[key]


def velodyne_projection(date_dir: Path, camera: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The (3, 4) matrix projecting homogeneous velodyne points into rectified camera ``camera``, and its image size.

    ``P_rect_0c @ R_rect_00 @ T_cam0_velo`` as in MonoDepth2's ``generate_depth_map``; the size is ``S_rect_02``
    (rows, cols), the rectified image size shared by cameras 2 and 3.
    """
    cam_path, velo_path = date_dir / "calib_cam_to_cam.txt", date_dir / "calib_velo_to_cam.txt"
    cam2cam, velo2cam = read_calib_file(cam_path), read_calib_file(velo_path)
    T_cam0_velo = np.eye(4)
    T_cam0_velo[:3, :3] = calib_entry(velo2cam, "R", 9, velo_path).reshape(3, 3)
    T_cam0_velo[:3, 3] = calib_entry(velo2cam, "T", 3, velo_path)
    R_rect = np.eye(4)
    R_rect[:3, :3] = calib_entry(cam2cam, "R_rect_00", 9, cam_path).reshape(3, 3)
    P_rect = calib_entry(cam2cam, f"P_rect_0{camera}", 12, cam_path).reshape(3, 4)
    width, height = calib_entry(cam2cam, "S_rect_02", 2, cam_path).astype(int)
    return P_rect @ R_rect @ T_cam0_velo, (int(height), int(width))


def read_velodyne_bin(path: Path) -> np.ndarray:
    """(N, 4) float32 ``x, y, z, reflectance`` of a KITTI velodyne scan."""
    try:
        raw = np.fromfile(path, dtype=np.float32)
    except OSError as error:
        raise DatasetError(f"{path}: cannot read velodyne scan ({error.strerror or error})") from error
    if raw.size % 4:
        raise DatasetError(f"{path}: velodyne scan has {raw.size} floats, not a multiple of 4 (truncated?)")
    return raw.reshape(-1, 4)


def velodyne_to_depth_map(points_velo: np.ndarray, P_velo_to_image: np.ndarray,
                          image_hw: tuple[int, int]) -> np.ndarray:
    """Sparse depth map from a velodyne scan, reproducing MonoDepth2's ``generate_depth_map`` number for number.

    Keeps points in front of the scanner (velodyne x >= 0), projects them, rounds to pixels and subtracts 1 (the
    1-based convention MonoDepth2 inherited from the MATLAB devkit; kept so ground truth matches published Eigen
    numbers), keeps pixels inside the image and, where several points land on one pixel, the nearest depth.
    Negative depths become 0.

    Args:
        points_velo: (N, 3+) velodyne points (x, y, z[, reflectance]).
        P_velo_to_image: (3, 4) projection of homogeneous velodyne points (:func:`velodyne_projection`).
        image_hw: (H, W) of the output map.

    Returns:
        (H, W) float32 depth in metres (camera z), 0 = no point.
    """
    height, width = image_hw
    points = points_velo[points_velo[:, 0] >= 0, :3].astype(np.float64)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    projected = homogeneous @ P_velo_to_image.T  # (N, 3) = (u z, v z, z)
    depth = projected[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.round(projected[:, 0] / depth) - 1
        v = np.round(projected[:, 1] / depth) - 1
    inside = (u >= 0) & (v >= 0) & (u < width) & (v < height)
    u, v, depth = u[inside].astype(np.int64), v[inside].astype(np.int64), depth[inside]
    depth_map = np.full(height * width, np.inf)
    np.minimum.at(depth_map, v * width + u, depth)
    depth_map[~np.isfinite(depth_map) | (depth_map < 0)] = 0.0
    return depth_map.reshape(height, width).astype(np.float32)


def read_kitti_timestamps(path: Path) -> np.ndarray:
    """(N,) float64 seconds since the Unix epoch from a KITTI raw ``timestamps.txt``."""
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    stamps = np.empty(len(lines))
    for i, line in enumerate(lines):
        try:
            instant = np.datetime64(line.replace(" ", "T"), "ns")
        except ValueError:
            raise DatasetError(f"{path}:{i + 1}: cannot parse timestamp {line!r}") from None
        seconds, nanoseconds = divmod(int(instant.astype(np.int64)), 1_000_000_000)
        stamps[i] = seconds + nanoseconds * 1e-9
    return stamps


def read_split_file(path: Path) -> list[tuple[str, int, str]]:
    """``(folder, frame, side)`` of each ``<date>/<drive> <frame> l|r`` line of an Eigen/Zhou split file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: split file does not exist")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or fields[2] not in SIDE_TO_CAMERA or not fields[1].isdigit() or fields[0].count("/") != 1:
            raise DatasetError(f"{path}:{number}: expected '<date>/<drive> <frame> l|r', got {line.strip()!r}")
        entries.append((fields[0], int(fields[1]), fields[2]))
    if not entries:
        raise DatasetError(f"{path}: split file lists no frames")
    return entries


class KittiRawReader(FrameReader):
    """KITTI raw drives listed by an Eigen/Zhou split file; every frame of a listed drive, the split's frames as
    ``split_positions``.

    Intrinsics are the rectified ``P_rect_02`` / ``P_rect_03`` of the drive's date (not MonoDepth2's one averaged
    K). Depth (``with_depth=True``) is the projected velodyne scan at the native rectified size ``S_rect_02``.

    Args:
        root: the KITTI raw root holding the ``<date>`` folders.
        split_file: a split file of ``<date>/<drive> <frame> l|r`` lines.
        image_extension: ``".png"`` (as downloaded) or ``".jpg"`` (MonoDepth2's converted copy).
        with_depth: depth from the velodyne scans (evaluation); requires them for every listed frame.

    Raises:
        DatasetError: a missing folder, image, calibration or velodyne file, a malformed split line, a gap in a
            drive's frame numbering, or a ``timestamps.txt`` whose count differs from the images; when a frame
            loads, a size that differs from its drive's first frame.
    """

    held_out_test = True

    def __init__(self, root: str | Path, split_file: str | Path, image_extension: str = ".png",
                 with_depth: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: KITTI raw root folder does not exist")
        self.image_extension = image_extension if image_extension.startswith(".") else "." + image_extension
        self._projections: dict[tuple[str, int], tuple[np.ndarray, tuple[int, int]]] = {}

        groups: dict[tuple[str, str], list[int]] = {}
        for folder, frame, side in read_split_file(Path(split_file)):
            groups.setdefault((folder, side), []).append(frame)
        intrinsics: dict[tuple[str, int], np.ndarray] = {}
        sequences, targets = [], []
        for (folder, side), frames in groups.items():
            camera = SIDE_TO_CAMERA[side]
            date = folder.split("/")[0]
            if (date, camera) not in intrinsics:
                calib_path = self.root / date / "calib_cam_to_cam.txt"
                P = calib_entry(read_calib_file(calib_path), f"P_rect_0{camera}", 12, calib_path).reshape(3, 4)
                intrinsics[date, camera] = P[:, :3].copy()
                if with_depth:
                    self._projections[date, camera] = velodyne_projection(self.root / date, camera)
            sequence = self._index_drive(folder, camera, intrinsics[date, camera], frames, with_depth)
            sequences.append(sequence)
            targets.append(frames)
        super().__init__(sequences, has_depth=with_depth, has_poses=False, split_positions=targets,
                         source=str(split_file))

    @classmethod
    def for_split(cls, data: Any, split: str) -> list[FrameReader]:
        """``data.split_file`` (train) or ``data.test_split_file`` (test, with velodyne depth) under ``data.path``."""
        root = configured_path(data)
        split_file = data.split_file if split == "train" else data.test_split_file
        if not split_file:
            raise DatasetError(f"data.{'split_file' if split == 'train' else 'test_split_file'} is required for "
                               f"kitti_raw")
        return [cls(root, split_file, with_depth=split == "test")]

    def _index_drive(self, folder: str, camera: int, K: np.ndarray, targets: list[int],
                     with_depth: bool) -> list[Frame]:
        image_dir = self.root / folder / f"image_0{camera}" / "data"
        if not image_dir.is_dir():
            raise DatasetError(f"{image_dir}: image folder does not exist")
        names = sorted(n for n in os.listdir(image_dir)
                       if n.endswith(self.image_extension) and n[: -len(self.image_extension)].isdigit())
        numbers = [int(n[: -len(self.image_extension)]) for n in names]
        if numbers != list(range(len(numbers))):
            missing = sorted(set(range(max(numbers) + 1)) - set(numbers))[0]
            raise DatasetError(f"{image_dir}: frame numbering has a gap: frame {missing} is missing "
                               f"({len(names)} '{self.image_extension}' files)")
        for frame in targets:
            if frame >= len(numbers):
                raise DatasetError(f"{image_dir / f'{frame:010d}{self.image_extension}'}: image listed in the split "
                                   "file does not exist")
        times_path = image_dir.parent / "timestamps.txt"
        if times_path.is_file():
            stamps = read_kitti_timestamps(times_path)
            if len(stamps) != len(numbers):
                raise DatasetError(f"{times_path}: has {len(stamps)} timestamps but {image_dir} has {len(numbers)} "
                                   "images")
        else:
            stamps = np.arange(len(numbers)) * FRAME_PERIOD_S
        depth_paths: dict[int, Path] = {}
        if with_depth:
            velo_dir = self.root / folder / "velodyne_points" / "data"
            for frame in targets:
                depth_paths[frame] = velo_dir / f"{frame:010d}.bin"
                if not depth_paths[frame].is_file():
                    raise DatasetError(f"{depth_paths[frame]}: velodyne scan of a split frame does not exist")
        sequence = f"{folder}/image_0{camera}"
        return [Frame(sequence=sequence, index=i, stamp=float(stamps[i]), image=image_dir / name, K=K,
                      depth=depth_paths.get(i)) for i, name in enumerate(names)]

    def load_depth(self, frame: Frame) -> np.ndarray:
        date = frame.sequence.split("/")[0]
        camera = int(frame.sequence[-1])
        P_velo_to_image, image_hw = self._projections[date, camera]
        return velodyne_to_depth_map(read_velodyne_bin(frame.depth), P_velo_to_image, image_hw)
