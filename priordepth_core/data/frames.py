"""Plain frames: what every dataset reader yields, and the decoders the readers share.

A reader indexes one or more sequences of :class:`Frame` (time-ordered; all frames of a sequence share one image
size) and decodes a frame's pixels and depth on demand with :meth:`FrameReader.load_rgb` /
:meth:`FrameReader.load_depth`, at the dataset's native resolution. Readers know nothing of training: context
frames, resizing, intrinsics scaling and augmentation are the sampler's job (:mod:`priordepth_core.data.sample`).

Adding a dataset: one reader file (a :class:`FrameReader` subclass with a ``for_split`` class method, see
:class:`priordepth_core.data.registry.RegisteredReader`) and one line in :data:`priordepth_core.data.registry.READERS`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..geometry.distortion import LensDistortion, Undistorter
from .errors import DatasetError


@dataclass(frozen=True, eq=False)  # arrays inside: identity, not value, comparison
class Frame:
    """One frame of a sequence, as indexed by a reader (no pixels loaded).

    Attributes:
        sequence: name of its sequence.
        index: position in the sequence (the sample's ``frame_index``).
        stamp: seconds.
        image: where the image is: a file path, or a reader-specific key (a rosbag message locator); decode it with
            the reader's :meth:`FrameReader.load_rgb`.
        K: (3, 3) float64 intrinsics at the native image resolution.
        depth: a depth file (``.png`` uint16 scaled by the reader's factor, ``.npy`` float metres, ``.bin`` velodyne
            scan), or None.
        T_world_cam: (4, 4) float64 camera-to-world pose, or None.
        distortion: the lens distortion of the pixels the reader's ``load_rgb`` returns, else None (a pinhole: the
            readers rectify by default, and K is then the rectified camera's).
    """

    sequence: str
    index: int
    stamp: float
    image: Any
    K: np.ndarray
    depth: Path | None = None
    T_world_cam: np.ndarray | None = None
    distortion: LensDistortion | None = None


class FrameReader:
    """Base of the dataset readers: indexed sequences of :class:`Frame`, decoded on demand at native resolution.

    A reader builds its index eagerly (file existence, counts, calibration, association), so bad input fails at
    construction with a :class:`DatasetError` naming the file, and then calls ``FrameReader.__init__``. Readers whose
    images are not files override :meth:`load_rgb` (and check each frame's size themselves); those with another
    depth source override :meth:`load_depth`.

    Attributes:
        sequences: frames of each sequence, in time order.
        has_depth: every frame has ``depth`` set.
        has_poses: every frame has ``T_world_cam`` set.
        split_positions: per sequence, the positions a split file lists as samples (other frames serve only as
            context), or None for every frame.
        source: names the dataset (a folder, split file or bag) in error messages.
    """

    def __init__(self, sequences: list[list[Frame]], *, has_depth: bool, has_poses: bool, source: str,
                 split_positions: list[list[int]] | None = None):
        self.sequences = sequences
        self.has_depth = has_depth
        self.has_poses = has_poses
        self.source = source
        self.split_positions = split_positions
        self._first_frames = {frames[0].sequence: frames[0] for frames in sequences if frames}
        self._sequence_hw: dict[str, tuple[int, int]] = {}  # filled as frames load, from each first frame

    def single_sequence(self, min_frames: int = 2) -> list[Frame]:
        """The frames of a reader that indexed one sequence (a folder, drive or bag topic), at least ``min_frames``.

        Consumers of whole sequences (the offline runner, the bag converters) need two frames to see any motion.

        Raises:
            ValueError: the reader indexed several sequences.
            DatasetError: fewer than ``min_frames`` frames, naming the dataset.
        """
        if len(self.sequences) != 1:
            raise ValueError(f"expected one sequence, the reader indexed {len(self.sequences)}")
        frames = self.sequences[0]
        if len(frames) < min_frames:
            raise DatasetError(f"{self.source}: needs at least {min_frames} frames, found {len(frames)}")
        return frames

    def load_rgb(self, frame: Frame) -> np.ndarray:
        """(H, W, 3) uint8 RGB of a frame, checked to have the size of its sequence's first frame."""
        image = load_rgb(frame.image)
        self._check_image_size(frame, image.shape[:2])
        return image

    def load_depth(self, frame: Frame) -> np.ndarray:
        """(H, W) float32 metres (0 = invalid) of a frame with depth."""
        return load_depth_npy(frame.depth)

    def undistorter_of(self, frame: Frame) -> Undistorter | None:
        """The rectification :meth:`load_rgb` applies to a frame's stored pixels, or None (stored as a pinhole)."""
        return None

    def _check_image_size(self, frame: Frame, image_hw: tuple[int, int]) -> None:
        """Raise :class:`DatasetError` when a frame's size differs from its sequence's first frame.

        One K serves a whole sequence, and context frames are resized with the target's scale: a frame of another
        size would silently get wrong intrinsics. The first frame's size is read once, when any frame of the
        sequence first loads, so no sequence is scanned up front.
        """
        first = self._first_frames[frame.sequence]
        if frame.sequence not in self._sequence_hw:
            self._sequence_hw[frame.sequence] = tuple(image_hw) if first is frame else read_image_hw(first.image)
        height, width = self._sequence_hw[frame.sequence]
        if tuple(image_hw) != (height, width):
            raise DatasetError(
                f"{frame.image}: image is {image_hw[1]}x{image_hw[0]} but the sequence's first frame {first.image} is "
                f"{width}x{height}; one sequence shares one size and intrinsics: resize this frame to {width}x{height} "
                "or split the sequence before it"
            )


def configured_path(data: Any) -> str:
    """``data.path`` of an experiment's ``data`` config section, which must name the dataset."""
    if not data.path:
        raise DatasetError(f"data.path must name the dataset for data.kind={data.kind!r}")
    return data.path


def load_rgb(path: Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB; a missing or undecodable file raises :class:`DatasetError`."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        problem = "file does not exist" if not Path(path).is_file() else "cannot decode image (truncated or corrupt?)"
        raise DatasetError(f"{path}: {problem}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image_hw(path: Path) -> tuple[int, int]:
    """(height, width) of an image file; a missing or undecodable file raises :class:`DatasetError`."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        problem = "file does not exist" if not Path(path).is_file() else "cannot decode image (truncated or corrupt?)"
        raise DatasetError(f"{path}: {problem}")
    return image.shape[:2]


def load_depth_png(path: Path, scale: float) -> np.ndarray:
    """(H, W) float32 metres from a 16-bit PNG storing ``metres * scale`` (TUM: 5000), 0 = invalid."""
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None:
        problem = "file does not exist" if not Path(path).is_file() else "cannot decode depth PNG (truncated?)"
        raise DatasetError(f"{path}: {problem}")
    if depth.ndim != 2 or depth.dtype != np.uint16:
        raise DatasetError(f"{path}: depth PNG must be single-channel uint16, got {depth.dtype} {depth.shape}")
    return depth.astype(np.float32) / np.float32(scale)


def load_depth_npy(path: Path) -> np.ndarray:
    """(H, W) float32 metres from a ``.npy`` file; non-finite and negative values become 0 (invalid)."""
    try:
        depth = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read depth array ({error})") from error
    if depth.ndim == 3 and depth.shape[0] == 1:
        depth = depth[0]
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
        raise DatasetError(f"{path}: depth array must be (H, W) floating point, got {depth.dtype} {depth.shape}")
    depth = depth.astype(np.float32)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def nearest_index(sorted_values: Sequence[float], value: float) -> int:
    """Index of the element of a non-empty ascending list closest to ``value``."""
    i = bisect.bisect_left(sorted_values, value)
    if i == 0:
        return 0
    if i == len(sorted_values):
        return i - 1
    return i if sorted_values[i] - value < value - sorted_values[i - 1] else i - 1
