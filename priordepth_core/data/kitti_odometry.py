"""KITTI odometry sequences (and the project's synthetic sequences written in the same layout).

Layout::

    <root>/sequences/<XX>/image_2/000000.png     left colour camera (image_3: right; image_0/1: grey)
    <root>/sequences/<XX>/calib.txt              "P0: 12 numbers" ... "P3: ...", rectified projections
    <root>/sequences/<XX>/times.txt              one stamp in seconds per frame
    <root>/sequences/<XX>/depth_exact/000000.npy optional (synthetic data): float32 metres per frame
    <root>/poses/<XX>.txt                        optional (sequences 00-10): T_world_cam0 per frame, 3x4 row-major

The poses are those of the rectified left GREY camera 0. Camera ``c`` is rectified to the same orientation and its
projection is ``P_c = K_c [I | t_c]`` with ``t_c = K_c^-1 P_c[:, 3]`` the position of camera 0 seen from camera c
(``T_camc_cam0 = [I | t_c]``). Poses of camera ``c`` are therefore ``T_world_camc = T_world_cam0 @ inv(T_camc_cam0)``
(for image_2 a 6 cm offset along x); relative motions between frames keep their rotation and shift slightly in
translation, as the true motion of the colour camera does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError
from .frames import Frame, FrameReader, configured_path
from .kitti_raw import calib_entry, read_calib_file
from .trajectory_io import read_trajectory

CAMERA_FOLDERS = {0: "image_0", 1: "image_1", 2: "image_2", 3: "image_3"}


def camera_from_cam0(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a rectified (3, 4) KITTI projection into K (3, 3) and ``T_camc_cam0`` (4, 4)."""
    K = P[:, :3].copy()
    T_camc_cam0 = np.eye(4)
    T_camc_cam0[:3, 3] = np.linalg.solve(K, P[:, 3])
    return K, T_camc_cam0


class KittiOdometryReader(FrameReader):
    """Frames of KITTI odometry sequences, one reader sequence per sequence name.

    Args:
        root: the folder holding ``sequences/`` (and ``poses/``).
        sequences: sequence names, e.g. ``["00", "01"]``.
        camera: 0-3, which rectified camera's images to read (2 = left colour).
        image_extension: file extension of the images.
        with_poses: read ``T_world_cam``; None (default) = when every sequence has ``poses/<XX>.txt``. Depth is
            read when every sequence has ``depth_exact/``.

    Raises:
        DatasetError: a missing folder or file, unequal counts of images / ``times.txt`` stamps / poses / depth
            files, or a malformed calibration or pose file; when a frame loads, a size that differs from its
            sequence's first frame.
    """

    held_out_test = True

    def __init__(self, root: str | Path, sequences: Sequence[str], camera: int = 2, image_extension: str = ".png",
                 with_poses: bool | None = None):
        self.root = Path(root)
        if camera not in CAMERA_FOLDERS:
            raise ValueError(f"camera must be 0, 1, 2 or 3, got {camera}")
        if isinstance(sequences, str) or not sequences:
            raise ValueError(f"sequences must be a non-empty list of sequence names, got {sequences!r}")
        if not (self.root / "sequences").is_dir():
            raise DatasetError(f"{self.root / 'sequences'}: KITTI odometry sequences folder does not exist")
        self.camera = camera
        self.image_extension = image_extension if image_extension.startswith(".") else "." + image_extension
        pose_paths = [self.root / "poses" / f"{name}.txt" for name in sequences]
        if with_poses is None:
            with_poses = all(p.is_file() for p in pose_paths)
        with_depth = all((self.root / "sequences" / name / "depth_exact").is_dir() for name in sequences)
        indexed = [self._index_sequence(name, pose_path if with_poses else None, with_depth)
                   for name, pose_path in zip(sequences, pose_paths)]
        super().__init__(indexed, has_depth=with_depth, has_poses=with_poses,
                         source=f"{self.root} sequences {list(sequences)}")

    @classmethod
    def for_split(cls, data: Any, split: str) -> list[FrameReader]:
        """``data.train_sequences`` or ``data.test_sequences`` under ``data.path``."""
        return [cls(configured_path(data), data.train_sequences if split == "train" else data.test_sequences)]

    def _index_sequence(self, name: str, pose_path: Path | None, with_depth: bool) -> list[Frame]:
        folder = self.root / "sequences" / name
        image_dir = folder / CAMERA_FOLDERS[self.camera]
        if not image_dir.is_dir():
            raise DatasetError(f"{image_dir}: image folder does not exist")
        names = sorted(n for n in os.listdir(image_dir) if n.endswith(self.image_extension))
        if not names:
            raise DatasetError(f"{image_dir}: no '{self.image_extension}' images")
        calib_path = folder / "calib.txt"
        P = calib_entry(read_calib_file(calib_path), f"P{self.camera}", 12, calib_path).reshape(3, 4)
        K, T_camc_cam0 = camera_from_cam0(P)

        times_path = folder / "times.txt"
        if not times_path.is_file():
            raise DatasetError(f"{times_path}: times file does not exist")
        try:
            stamps = np.loadtxt(times_path, dtype=np.float64, ndmin=1)
        except ValueError as error:
            raise DatasetError(f"{times_path}: cannot parse stamps ({error})") from None
        if len(stamps) != len(names):
            raise DatasetError(f"{times_path}: has {len(stamps)} stamps but {image_dir} has {len(names)} images")

        poses: list[np.ndarray | None] = [None] * len(names)
        if pose_path is not None:
            if not pose_path.is_file():
                raise DatasetError(f"{pose_path}: pose file does not exist")
            _, T_world_cam0 = read_trajectory(pose_path, format="kitti")
            if len(T_world_cam0) != len(names):
                raise DatasetError(f"{pose_path}: has {len(T_world_cam0)} poses but {image_dir} has {len(names)} "
                                   "images")
            T_cam0_camc = np.linalg.inv(T_camc_cam0)
            poses = list(T_world_cam0 @ T_cam0_camc)

        depths: list[Path | None] = [None] * len(names)
        if with_depth:
            depth_dir = folder / "depth_exact"
            available = set(os.listdir(depth_dir))
            depths = [depth_dir / (Path(n).stem + ".npy") for n in names]
            missing = [p for p in depths if p.name not in available]
            if missing:
                raise DatasetError(f"{missing[0]}: depth file missing ({len(missing)} of {len(names)} frames lack "
                                   "one)")
        return [Frame(sequence=name, index=i, stamp=float(stamps[i]), image=image_dir / n, K=K, depth=depths[i],
                      T_world_cam=poses[i]) for i, n in enumerate(names)]
