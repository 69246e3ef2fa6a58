"""TUM RGB-D sequences (Sturm et al. 2012), and the project's synthetic sequences written in the same layout.

Layout of one sequence folder::

    rgb.txt, depth.txt         "timestamp filename" lines, '#' comments
    groundtruth.txt            "timestamp tx ty tz qx qy qz qw": the colour camera's optical centre in the world
    rgb/*.png, depth/*.png     8-bit colour; 16-bit depth storing metres * 5000, 0 = no measurement
    depth_exact/<rgb stem>.npy optional (synthetic data): float32 metres registered to each rgb frame; preferred
    intrinsics.txt             optional: one line "fx fy cx cy width height" (or "fx fy cx cy": the size is then
                               the first image's), '#' comments

Association follows TUM's ``associate.py``: every pair of stamps closer than ``max_time_difference`` is a candidate,
candidates are taken greedily by increasing difference and each stamp is used at most once. Depth is associated to
rgb first, then ground truth to the remaining rgb frames; rgb frames left without a partner are dropped. Ground truth
is the nearest pose within the tolerance, not interpolated, as TUM's own tools do.

Intrinsics, when no ``intrinsics.txt`` exists, come from TUM's published calibration of the sensor named in the
folder (``freiburg1``/``fr1`` ...), with TUM's published plumb_bob distortion of that sensor, which is removed as
frames load (:mod:`priordepth_core.geometry.distortion`; K is kept as the rectified camera, depth is remapped with the
same map, nearest). fr3 images come undistorted; an ``intrinsics.txt`` (or ``intrinsics=``) describes a pinhole.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry.distortion import PLUMB_BOB, LensDistortion, Undistorter
from .errors import DatasetError
from .frames import Frame, FrameReader, configured_path, load_depth_npy, load_depth_png, load_rgb, read_image_hw
from .trajectory_io import read_trajectory

TUM_DEPTH_SCALE = 5000.0
TUM_IMAGE_HW = (480, 640)
# fx, fy, cx, cy of the colour cameras (https://cvg.cit.tum.de/data/datasets/rgbd-dataset/file_formats).
TUM_INTRINSICS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}
# Radial-tangential (plumb_bob k1 k2 p1 p2 k3) distortion of the colour cameras, published beside TUM_INTRINSICS.
TUM_DISTORTION = {
    "freiburg1": (0.2624, -0.9531, -0.0054, 0.0026, 1.1633),
    "freiburg2": (0.2312, -0.7849, -0.0033, -0.0001, 0.9172),
    "freiburg3": (0.0, 0.0, 0.0, 0.0, 0.0),
}
INTRINSICS_FILE = "intrinsics.txt"


def associate(first_stamps: np.ndarray, second_stamps: np.ndarray, max_difference: float) -> list[tuple[int, int]]:
    """Match two stamp lists as TUM's ``associate.py`` (offset 0): greedy by smallest difference, each used once.

    Args:
        first_stamps: (N,) seconds.
        second_stamps: (M,) seconds.
        max_difference: pairs must differ by strictly less than this.

    Returns:
        ``(i, j)`` index pairs, sorted by ``first_stamps[i]``.
    """
    first_stamps = np.asarray(first_stamps, dtype=np.float64)
    second_stamps = np.asarray(second_stamps, dtype=np.float64)
    order = np.argsort(second_stamps, kind="stable")
    sorted_second = second_stamps[order]
    low = np.searchsorted(sorted_second, first_stamps - max_difference, side="left")
    high = np.searchsorted(sorted_second, first_stamps + max_difference, side="right")
    candidates = []
    for i, (lo, hi) in enumerate(zip(low, high)):
        for k in range(lo, hi):
            difference = abs(first_stamps[i] - sorted_second[k])
            if difference < max_difference:
                candidates.append((difference, first_stamps[i], sorted_second[k], i, int(order[k])))
    candidates.sort()
    used_first, used_second, matches = set(), set(), []
    for _, _, _, i, j in candidates:
        if i not in used_first and j not in used_second:
            used_first.add(i)
            used_second.add(j)
            matches.append((i, j))
    matches.sort(key=lambda pair: (first_stamps[pair[0]], pair[0]))
    return matches


def read_file_list(path: Path) -> tuple[np.ndarray, list[str]]:
    """Stamps and file names of a TUM ``rgb.txt`` / ``depth.txt`` (``timestamp filename`` lines)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file list does not exist")
    stamps, names = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise DatasetError(f"{path}:{number}: expected 'timestamp filename', got {len(fields)} columns")
        try:
            stamps.append(float(fields[0]))
        except ValueError:
            raise DatasetError(f"{path}:{number}: non-numeric timestamp {fields[0]!r}") from None
        names.append(fields[1])
    if not names:
        raise DatasetError(f"{path}: file list has no entries")
    return np.array(stamps), names


def read_intrinsics_file(path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    """K (3, 3) and (height, width) from one ``fx fy cx cy [width height]`` line ('#' comments allowed).

    Many TUM tools write only ``fx fy cx cy``; the size is then None and the caller takes it from the images.

    Raises:
        DatasetError: naming the file (and line): not exactly one line of 4 or 6 numbers, a non-numeric or non-finite
            value, a focal length or principal point that is not positive, or a size that is not a positive integer.
    """
    lines = [(n, line.split()) for n, line in enumerate(path.read_text().splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) != 1 or len(lines[0][1]) not in (4, 6):
        raise DatasetError(f"{path}: expected one line 'fx fy cx cy' or 'fx fy cx cy width height'")
    number, fields = lines[0]
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise DatasetError(f"{path}:{number}: non-numeric value in {' '.join(fields)!r}") from None
    names = ("fx", "fy", "cx", "cy", "width", "height")
    for name, value in zip(names, values):
        if not np.isfinite(value) or value <= 0:
            raise DatasetError(f"{path}:{number}: {name} is {value}, but every value of 'fx fy cx cy [width height]' "
                               "must be a positive finite number (pixels)")
    fx, fy, cx, cy = values[:4]
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if len(values) == 4:
        return K, None
    width, height = values[4:]
    if width != int(width) or height != int(height):
        raise DatasetError(f"{path}:{number}: width and height must be whole pixel counts, got {width} {height}")
    return K, (int(height), int(width))


def tum_sensor_of(folder: Path) -> str:
    """``freiburgN`` of the TUM sensor named by ``freiburgN`` or ``frN`` in the folder name."""
    match = re.search(r"(?:freiburg|fr)([123])(?![0-9])", folder.resolve().name)
    if match is None:
        raise DatasetError(f"{folder}: no {INTRINSICS_FILE} and the folder name names no TUM sensor (freiburg1/2/3 "
                           "or fr1/2/3); pass intrinsics= or write the file")
    return f"freiburg{match.group(1)}"


def tum_intrinsics_for(folder: Path) -> np.ndarray:
    """K (3, 3) of the TUM sensor named by ``freiburgN`` or ``frN`` in the folder name."""
    fx, fy, cx, cy = TUM_INTRINSICS[tum_sensor_of(folder)]
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _check_listed_files(root: Path, names: list[str], what: str) -> list[Path]:
    paths = [root / name for name in names]
    listing: dict[Path, set[str]] = {}
    for path in paths:
        if path.parent not in listing:
            listing[path.parent] = set(os.listdir(path.parent)) if path.parent.is_dir() else set()
        if path.name not in listing[path.parent]:
            raise DatasetError(f"{path}: {what} listed in the sequence does not exist")
    return paths


class TumRgbdReader(FrameReader):
    """Frames of one TUM RGB-D sequence: the rgb frames that survive association, at native size.

    Args:
        root: the sequence folder (``rgbd_dataset_freiburg1_xyz``).
        max_time_difference: association tolerance in seconds (TUM's default 0.02).
        intrinsics: (3, 3) K at the native image size, overriding ``intrinsics.txt`` and the built-in table.
        with_depth: add ``depth_gt``; None (default) = when ``depth_exact/`` or ``depth.txt`` exists.
        with_poses: add poses from ``groundtruth.txt``; None (default) = when it exists.
        depth_scale: depth PNG units per metre.
        undistort: remove the sensor's published lens distortion as frames load (default); False: raw pixels, with
            the lens in ``Frame.distortion``.

    Raises:
        DatasetError: a missing folder, list or listed image; a malformed line; unknown intrinsics; an
            ``intrinsics.txt`` size that differs from the first image, or a non-finite or non-positive value in it;
            no frame surviving association; when a frame loads, a size that differs from the first frame's.
    """

    # One sequence trains; evaluate on another one with ``python -m priordepth_core.evaluate``.
    held_out_test = False

    def __init__(self, root: str | Path, max_time_difference: float = 0.02, intrinsics: np.ndarray | None = None,
                 with_depth: bool | None = None, with_poses: bool | None = None,
                 depth_scale: float = TUM_DEPTH_SCALE, undistort: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: TUM RGB-D sequence folder does not exist")
        self.depth_scale = float(depth_scale)
        rgb_stamps, rgb_names = read_file_list(self.root / "rgb.txt")
        rgb_paths = _check_listed_files(self.root, rgb_names, "rgb image")
        keep = np.arange(len(rgb_paths))

        exact_dir, depth_list = self.root / "depth_exact", self.root / "depth.txt"
        if with_depth is None:
            with_depth = exact_dir.is_dir() or depth_list.is_file()
        depth_paths: list[Path] | None = None
        if with_depth and exact_dir.is_dir():
            depth_paths = _check_listed_files(exact_dir, [p.stem + ".npy" for p in rgb_paths], "exact depth")
        elif with_depth:
            depth_stamps, depth_names = read_file_list(depth_list)
            all_depth_paths = _check_listed_files(self.root, depth_names, "depth image")
            pairs = associate(rgb_stamps, depth_stamps, max_time_difference)
            keep = np.array([i for i, _ in pairs], dtype=np.int64)
            depth_by_rgb = dict(pairs)
            depth_paths = [all_depth_paths[depth_by_rgb[i]] if i in depth_by_rgb else None
                           for i in range(len(rgb_paths))]

        gt_path = self.root / "groundtruth.txt"
        if with_poses is None:
            with_poses = gt_path.is_file()
        poses: dict[int, np.ndarray] = {}
        if with_poses:
            gt_stamps, T_world_cam = read_trajectory(gt_path, format="tum")
            pairs = associate(rgb_stamps[keep], gt_stamps, max_time_difference)
            poses = {int(keep[i]): T_world_cam[j] for i, j in pairs}
            keep = np.array([keep[i] for i, _ in pairs], dtype=np.int64)
        if len(keep) == 0:
            raise DatasetError(f"{self.root}: no rgb frame has a depth and ground-truth partner within "
                               f"{max_time_difference} s")

        K = self._intrinsics(intrinsics, rgb_paths[keep[0]])
        lens = self._lens(intrinsics)
        self._undistorter: Undistorter | None = None
        if undistort and lens is not None:
            self._undistorter = Undistorter(K, lens, TUM_IMAGE_HW)
            lens = None
        frames = [Frame(sequence=self.root.name, index=position, stamp=float(rgb_stamps[i]), image=rgb_paths[i],
                        K=K, depth=depth_paths[i] if depth_paths else None, T_world_cam=poses.get(int(i)),
                        distortion=lens)
                  for position, i in enumerate(keep)]
        super().__init__([frames], has_depth=with_depth, has_poses=with_poses, source=str(self.root))

    @classmethod
    def for_split(cls, data: Any, split: str) -> list[FrameReader]:
        """The sequence ``data.path``, whichever the split."""
        return [cls(configured_path(data))]

    def _intrinsics(self, intrinsics: np.ndarray | None, first_image: Path) -> np.ndarray:
        if intrinsics is not None:
            K = np.asarray(intrinsics, dtype=np.float64)
            if K.shape != (3, 3):
                raise ValueError(f"intrinsics must have shape (3, 3), got {K.shape}")
            return K
        path = self.root / INTRINSICS_FILE
        if path.is_file():
            K, size_hw = read_intrinsics_file(path)
        else:
            K, size_hw = tum_intrinsics_for(self.root), TUM_IMAGE_HW
        actual_hw = read_image_hw(first_image)
        if size_hw is None:
            return K  # "fx fy cx cy" only: the first image defines the size, and every frame is checked against it
        if actual_hw != size_hw:
            source = path if path.is_file() else "the TUM calibration table"
            raise DatasetError(f"{first_image}: image is {actual_hw[1]}x{actual_hw[0]} but the intrinsics from "
                               f"{source} are for {size_hw[1]}x{size_hw[0]}")
        return K

    def _lens(self, intrinsics: np.ndarray | None) -> LensDistortion | None:
        """The published distortion of the TUM sensor when the calibration comes from TUM's table, else None."""
        if intrinsics is not None or (self.root / INTRINSICS_FILE).is_file():
            return None
        lens = LensDistortion(PLUMB_BOB, TUM_DISTORTION[tum_sensor_of(self.root)])
        return None if lens.is_zero else lens

    def undistorter_of(self, frame: Frame) -> Undistorter | None:
        return self._undistorter

    def load_rgb(self, frame: Frame) -> np.ndarray:
        image = load_rgb(frame.image)
        self._check_image_size(frame, image.shape[:2])
        return image if self._undistorter is None else self._undistorter.rectify_image(image)

    def load_depth(self, frame: Frame) -> np.ndarray:
        if frame.depth.suffix == ".npy":
            depth = load_depth_npy(frame.depth)
        else:
            depth = load_depth_png(frame.depth, self.depth_scale)
        # TUM's depth is registered to the colour image as stored, so it takes the colour image's map.
        return depth if self._undistorter is None else self._undistorter.rectify_depth(depth)
