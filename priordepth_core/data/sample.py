"""The sample contract every dataset reader yields, and the frame loading, resizing and augmentation they share.

Sample dict (one target frame with its context frames; tensors are CPU, collated into a leading batch dimension by
``torch.utils.data.default_collate``):

============================  ===========================  =========================================================
key                           shape / type                 meaning
============================  ===========================  =========================================================
``"image"``                   (3, H, W) float32 in [0, 1]  the target frame, RGB
``"context"``                 (S, 3, H, W) float32         the context frames at ``context_offsets``, same order
``"context_offsets"``         (S,) int64                   frame offsets of the context relative to the target
``"K"``                       (3, 3) float32               target intrinsics scaled to (H, W) (pixel centres at
                                                           integer coordinates, :func:`resize_intrinsics`)
``"depth_gt"``                (1, H, W) float32            metres, 0 = invalid; (1, H0, W0) at the dataset's native
                                                           resolution with ``depth_at_native_resolution=True``.
                                                           Present only when the dataset has depth.
``"T_world_cam"``             (4, 4) float32               pose of the target camera (camera-to-world).
                                                           Present only when the dataset has poses.
``"T_context_target"``        (S, 4, 4) float32            maps target-camera points into each context camera:
                                                           ``inv(T_world_cam[ctx]) @ T_world_cam[target]``.
                                                           Present only when the dataset has poses.
``"stamp"``                   float (seconds)              time of the target frame
``"frame_index"``             int                          index of the target frame in its sequence
``"sequence"``                str                          the sequence (drive, folder, bag topic) it comes from
============================  ===========================  =========================================================

All frames of a sequence share the intrinsics ``K`` and one image size: a frame whose size differs from its
sequence's first frame raises :class:`DatasetError` when it loads. A dataset yields the same keys for every sample,
so batches collate. Targets whose context frames would fall outside their sequence are skipped (as MonoDepth2 does).

Resizing: images with ``cv2.INTER_AREA`` when shrinking (``INTER_LINEAR`` when enlarging); depth with nearest
neighbour using pixel centres (``cv2.INTER_NEAREST_EXACT``), never interpolated across depth edges.

Augmentation (off unless an :class:`Augmentation` is given) is a pure function of ``(seed, epoch, index)``:
- colour jitter (MonoDepth2's ranges): one set of brightness/contrast/saturation/hue factors per sample, applied
  identically to target and context frames so the photometric loss still compares like with like;
- horizontal flip, applied to every frame, depth and the geometry consistently: ``cx -> (W - 1) - cx`` (and the
  skew changes sign), and every pose is conjugated by the mirror ``M = diag(-1, 1, 1, 1)``:
  ``T -> M T M``. For ``T_context_target`` this is exactly the motion between the mirrored images; for
  ``T_world_cam`` it describes the mirrored world, so poses stay proper rotations and relations between them hold.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import kornia.enhance
import numpy as np
import torch
from torch.utils.data import Dataset

from ..geometry.camera import resize_intrinsics
from .errors import DatasetError

MIRROR_X = np.diag([-1.0, 1.0, 1.0, 1.0])


@dataclass(frozen=True, eq=False)  # arrays inside: identity, not value, comparison
class Frame:
    """One frame of a sequence, as indexed by a reader (no pixels loaded).

    Attributes:
        sequence: name of its sequence.
        index: position in the sequence (the sample's ``frame_index``).
        stamp: seconds.
        image: where the image is: a file path, or a reader-specific key (a rosbag message locator).
        K: (3, 3) float64 intrinsics at the native image resolution.
        depth: a depth file (``.png`` uint16 scaled by the reader's factor, ``.npy`` float metres, ``.bin`` velodyne
            scan), or None.
        T_world_cam: (4, 4) float64 camera-to-world pose, or None.
    """

    sequence: str
    index: int
    stamp: float
    image: Any
    K: np.ndarray
    depth: Path | None = None
    T_world_cam: np.ndarray | None = None


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation; ranges as in MonoDepth2 (``transforms.ColorJitter(0.2, 0.2, 0.2, 0.1)``, p = 0.5).

    Attributes:
        color_jitter_probability: chance that a sample is colour-jittered.
        brightness, contrast, saturation: factors drawn uniformly from ``[1 - x, 1 + x]``.
        hue: shift drawn uniformly from ``[-hue, hue]`` of a full turn.
        flip_probability: chance that a sample is mirrored left-right (with K and poses, see the module docstring).
        seed: base seed; the draw for a sample depends only on ``(seed, epoch, index)``.
    """

    color_jitter_probability: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.1
    flip_probability: float = 0.5
    seed: int = 0


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


def resize_image(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, C) image to ``size_hw``: area averaging when shrinking, bilinear when enlarging."""
    height, width = size_hw
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def resize_depth_nearest(depth: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W) depth map by nearest neighbour at pixel centres, so no depth is ever interpolated."""
    height, width = size_hw
    if depth.shape == (height, width):
        return depth
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def relative_poses(T_world_target: np.ndarray, T_world_context: np.ndarray) -> np.ndarray:
    """(S, 4, 4) ``T_context_target = inv(T_world_context) @ T_world_target`` for (4, 4) and (S, 4, 4) inputs."""
    R = T_world_context[:, :3, :3]
    t = T_world_context[:, :3, 3:]
    T_context_world = np.tile(np.eye(4), (len(T_world_context), 1, 1))
    T_context_world[:, :3, :3] = np.swapaxes(R, 1, 2)
    T_context_world[:, :3, 3:] = -np.swapaxes(R, 1, 2) @ t
    return T_context_world @ T_world_target


def color_jitter(images: torch.Tensor, generator: np.random.Generator, augmentation: Augmentation) -> torch.Tensor:
    """Apply one draw of brightness, contrast, saturation and hue factors to all (N, 3, H, W) images alike."""
    brightness, contrast, saturation = (
        generator.uniform(1 - r, 1 + r) for r in (augmentation.brightness, augmentation.contrast,
                                                   augmentation.saturation)
    )
    hue_turns = generator.uniform(-augmentation.hue, augmentation.hue)
    images = kornia.enhance.adjust_brightness_accumulative(images, float(brightness))
    images = kornia.enhance.adjust_contrast_with_mean_subtraction(images, float(contrast))
    images = kornia.enhance.adjust_saturation(images, float(saturation))
    images = kornia.enhance.adjust_hue(images, float(hue_turns * 2 * np.pi))
    return images.clamp_(0.0, 1.0)


def flip_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Mirror a sample left-right: images, depth, K and poses consistently (see the module docstring)."""
    width = sample["image"].shape[-1]
    sample["image"] = sample["image"].flip(-1)
    sample["context"] = sample["context"].flip(-1)
    if "depth_gt" in sample:
        sample["depth_gt"] = sample["depth_gt"].flip(-1)
    K = sample["K"].clone()
    K[0, 2] = (width - 1) - K[0, 2]
    K[0, 1] = -K[0, 1]
    sample["K"] = K
    mirror = torch.from_numpy(MIRROR_X).float()
    for key in ("T_world_cam", "T_context_target"):
        if key in sample:
            sample[key] = mirror @ sample[key] @ mirror
    return sample


class FrameSequenceDataset(Dataset):
    """Base of the readers: turns indexed sequences of :class:`Frame` into samples of the module's contract.

    A reader builds its index eagerly (file existence, counts, calibration) and calls :meth:`_set_sequences`.
    Subclasses whose images are not files override :meth:`_load_rgb` (and check each frame's size themselves);
    those with another depth source override :meth:`_load_depth`.

    Args:
        size_hw: output ``(height, width)``.
        context_offsets: offsets of the context frames relative to the target (non-empty, no 0).
        depth_at_native_resolution: keep ``depth_gt`` at the dataset's resolution (evaluation) instead of resizing
            it to ``size_hw`` by nearest neighbour.
        augmentation: training augmentation, or None (default) for none.
    """

    def __init__(self, size_hw: tuple[int, int], context_offsets: tuple[int, ...] = (-1, 1),
                 depth_at_native_resolution: bool = False, augmentation: Augmentation | None = None):
        height, width = (int(v) for v in size_hw)
        if height <= 0 or width <= 0:
            raise ValueError(f"size_hw must be two positive integers, got {size_hw}")
        offsets = tuple(int(o) for o in context_offsets)
        if not offsets or 0 in offsets:
            raise ValueError(f"context_offsets must be non-empty and exclude 0, got {context_offsets}")
        self.size_hw = (height, width)
        self.context_offsets = offsets
        self.depth_at_native_resolution = depth_at_native_resolution
        self.augmentation = augmentation
        self.epoch = 0
        self.has_depth = False
        self.has_poses = False
        self.sequences: list[list[Frame]] = []
        self._targets: list[tuple[int, int]] = []
        self._first_frames: dict[str, Frame] = {}
        self._sequence_hw: dict[str, tuple[int, int]] = {}  # filled as frames load, from each first frame

    def _set_sequences(self, sequences: list[list[Frame]], has_depth: bool, has_poses: bool,
                       target_positions: list[list[int]] | None = None, source: str = "dataset") -> None:
        """Install the index; targets default to every frame whose context lies inside its sequence.

        Args:
            sequences: frames of each sequence, in time order.
            has_depth: every frame has ``depth`` set.
            has_poses: every frame has ``T_world_cam`` set.
            target_positions: per sequence, the candidate target positions (e.g. from a split file).
            source: names the dataset in the error raised when no target remains.
        """
        self.sequences = sequences
        self._first_frames = {frames[0].sequence: frames[0] for frames in sequences if frames}
        self._sequence_hw = {}
        self.has_depth = has_depth
        self.has_poses = has_poses
        lowest, highest = min(self.context_offsets), max(self.context_offsets)
        self._targets = []
        for s, frames in enumerate(sequences):
            positions = range(len(frames)) if target_positions is None else target_positions[s]
            self._targets += [(s, p) for p in positions if p + lowest >= 0 and p + highest < len(frames)]
        if not self._targets:
            raise DatasetError(f"{source}: no target frame has all context frames {self.context_offsets} inside its "
                               f"sequence ({sum(len(f) for f in sequences)} frames in {len(sequences)} sequences)")

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (they depend only on seed, epoch and index)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._targets)

    def frame_of(self, index: int) -> Frame:
        """The target :class:`Frame` of sample ``index``."""
        s, p = self._targets[index]
        return self.sequences[s][p]

    def _load_rgb(self, frame: Frame) -> np.ndarray:
        """(H, W, 3) uint8 RGB of a frame, checked to have the size of its sequence's first frame."""
        image = load_rgb(frame.image)
        self._check_image_size(frame, image.shape[:2])
        return image

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

    def _load_depth(self, frame: Frame) -> np.ndarray:
        """(H, W) float32 metres of a frame with depth."""
        return load_depth_npy(frame.depth)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self._targets):
            raise IndexError(f"sample index {index} out of range for a dataset of {len(self._targets)}")
        s, p = self._targets[index]
        frames = self.sequences[s]
        target = frames[p]
        context_frames = [frames[p + o] for o in self.context_offsets]

        target_rgb = self._load_rgb(target)
        native_hw = target_rgb.shape[:2]
        sample: dict[str, Any] = {
            "image": image_to_tensor(resize_image(target_rgb, self.size_hw)),
            "context": torch.stack(
                [image_to_tensor(resize_image(self._load_rgb(f), self.size_hw)) for f in context_frames]
            ),
            "context_offsets": torch.tensor(self.context_offsets, dtype=torch.int64),
            "K": resize_intrinsics(torch.tensor(target.K), native_hw, self.size_hw).float(),
        }
        if self.has_depth:
            depth = self._load_depth(target)
            if not self.depth_at_native_resolution:
                depth = resize_depth_nearest(depth, self.size_hw)
            sample["depth_gt"] = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None]
        if self.has_poses:
            T_world_context = np.stack([f.T_world_cam for f in context_frames])
            sample["T_world_cam"] = torch.tensor(target.T_world_cam, dtype=torch.float32)
            sample["T_context_target"] = torch.from_numpy(relative_poses(target.T_world_cam, T_world_context)).float()
        sample["stamp"] = float(target.stamp)
        sample["frame_index"] = int(target.index)
        sample["sequence"] = target.sequence
        if self.augmentation is not None:
            sample = self._augment(sample, index)
        return sample

    def _augment(self, sample: dict[str, Any], index: int) -> dict[str, Any]:
        augmentation = self.augmentation
        generator = np.random.default_rng([augmentation.seed, self.epoch, index])
        jitter, flip = generator.random(2)
        if jitter < augmentation.color_jitter_probability:
            frames = color_jitter(torch.cat([sample["image"][None], sample["context"]]), generator, augmentation)
            sample["image"], sample["context"] = frames[0], frames[1:]
        if flip < augmentation.flip_probability:
            sample = flip_sample(sample)
        return sample


def nearest_index(sorted_values: list[float], value: float) -> int:
    """Index of the element of a non-empty ascending list closest to ``value``."""
    i = bisect.bisect_left(sorted_values, value)
    if i == 0:
        return 0
    if i == len(sorted_values):
        return i - 1
    return i if sorted_values[i] - value < value - sorted_values[i - 1] else i - 1
