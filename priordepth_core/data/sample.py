"""The sampler: training and evaluation samples built from a reader's plain frames, in one place.

:class:`FrameSamples` takes any :class:`~priordepth_core.data.frames.FrameReader` and chooses the context frames,
resizes images (and depth), scales K with the image, relates the poses and augments. Readers never see these sizes
or offsets.

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
``"match_x_target"``          (S, N, 2) float32            with a match cache: the frozen keypoint matches of the
``"match_x_context"``                                      target into each context, mapped from native to sample
                                                           pixels, padded to N (:mod:`.match_cache`)
``"match_weight"``            (S, N) float32               1 for a match, 0 for padding
``"match_depth_target"``      (S, N) float32               the match's target depth triangulated with the cached
                                                           essential pose (unit-length translation)
``"match_parallax_deg"``      (S, N) float32               that triangulation's parallax angle
``"essential_T_context_target"``  (S, 4, 4) float32        the cached essential pose, unit-length translation
``"essential_status"``        (S,) int64                   ``match_cache.OK``, ``LOW_PARALLAX``, ``ROTATION_ONLY``,
                                                           ``FAILED``
============================  ===========================  =========================================================

Context frames are the fixed ``context_offsets``, or, with a match cache and ``min_context_parallax_px``, chosen by
parallax: for each offset, the nearest frame on its side (at least as far as the offset, at most the cache's
``max_offset``) whose cached median rotation-compensated parallax, scaled to the sample resolution, reaches the
threshold; where none does, the one with the most parallax. Handheld neighbours move less than a pixel.

All frames of a sequence share the intrinsics ``K`` and one image size: a frame whose size differs from its
sequence's first frame raises :class:`DatasetError` when the reader loads it. A dataset yields the same keys for every
sample, so batches collate. Targets whose context frames would fall outside their sequence are skipped (as MonoDepth2
does).

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

from dataclasses import dataclass
from typing import Any

import cv2
import kornia.enhance
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from ..geometry.camera import resize_intrinsics
from .errors import DatasetError
from .frames import FrameReader
from .match_cache import MatchCacheSettings, PairMatches, SequenceMatchCache, load_or_build

MIRROR_X = np.diag([-1.0, 1.0, 1.0, 1.0])


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
    for key in ("T_world_cam", "T_context_target", "essential_T_context_target"):
        if key in sample:
            sample[key] = mirror @ sample[key] @ mirror
    for key in ("match_x_target", "match_x_context"):
        if key in sample:
            x = sample[key].clone()
            x[..., 0] = (width - 1) - x[..., 0]
            sample[key] = x
    return sample


class FrameSamples(Dataset):
    """Samples of the module's contract from the frames of one reader.

    Targets are the reader's frames (or the positions its split file lists) whose context frames all lie inside
    their sequence, enumerated sequence by sequence. A sample's augmentation draw depends only on
    ``(seed, epoch, index)``.

    Args:
        reader: the frame source.
        size_hw: output ``(height, width)``.
        context_offsets: offsets of the context frames relative to the target (non-empty, no 0).
        depth_at_native_resolution: keep ``depth_gt`` at the dataset's resolution (evaluation) instead of resizing
            it to ``size_hw`` by nearest neighbour.
        augmentation: training augmentation, or None (default) for none.
        match_settings: build (or read) each sequence's frozen match cache and add the ``match_*`` and
            ``essential_*`` keys; None (default) for none.
        min_context_parallax_px: with ``match_settings``, choose the context frames by parallax (see the module
            docstring); None keeps ``context_offsets``.
        cache_dir: where match caches live (default: beside each sequence, :func:`.match_cache.default_cache_dir`).

    Raises:
        ValueError: a bad ``size_hw`` or ``context_offsets``.
        DatasetError: no target frame has all its context frames inside its sequence.
    """

    def __init__(self, reader: FrameReader, size_hw: tuple[int, int], context_offsets: tuple[int, ...] = (-1, 1),
                 depth_at_native_resolution: bool = False, augmentation: Augmentation | None = None,
                 match_settings: MatchCacheSettings | None = None, min_context_parallax_px: float | None = None,
                 cache_dir: str | None = None):
        height, width = (int(v) for v in size_hw)
        if height <= 0 or width <= 0:
            raise ValueError(f"size_hw must be two positive integers, got {size_hw}")
        offsets = tuple(int(o) for o in context_offsets)
        if not offsets or 0 in offsets:
            raise ValueError(f"context_offsets must be non-empty and exclude 0, got {context_offsets}")
        self.reader = reader
        self.size_hw = (height, width)
        self.context_offsets = offsets
        self.depth_at_native_resolution = depth_at_native_resolution
        self.augmentation = augmentation
        self.epoch = 0
        self.match_settings = match_settings
        if match_settings is not None and max(abs(o) for o in offsets) > match_settings.max_offset:
            raise ValueError(f"context_offsets {offsets} reach beyond the match cache's max_offset "
                             f"{match_settings.max_offset}")
        if min_context_parallax_px is not None and match_settings is None:
            raise ValueError("choosing context frames by parallax needs a match cache (match_settings)")
        self._caches: list[SequenceMatchCache] = (
            [load_or_build(reader, frames, match_settings, cache_dir) for frames in reader.sequences]
            if match_settings is not None else [])
        self.min_context_parallax_px = min_context_parallax_px
        self._targets = self._find_targets()
        self._target_offsets = [self._choose_offsets(s, p) for s, p in self._targets]

    def _choose_offsets(self, s: int, p: int) -> tuple[int, ...]:
        if self.min_context_parallax_px is None:
            return self.context_offsets
        cache = self._caches[s]
        count = len(self.reader.sequences[s])
        scale = self.size_hw[1] / cache.image_hw[1]
        chosen = []
        for offset in self.context_offsets:
            sign = 1 if offset > 0 else -1
            candidates = [sign * d for d in range(abs(offset), self.match_settings.max_offset + 1)
                          if 0 <= p + sign * d < count]
            parallax = [cache.pair_parallax_px(p, p + o) * scale for o in candidates]
            enough = [o for o, px in zip(candidates, parallax) if px >= self.min_context_parallax_px]
            chosen.append(enough[0] if enough else candidates[int(np.argmax(parallax))])
        return tuple(chosen)

    def _find_targets(self) -> list[tuple[int, int]]:
        sequences = self.reader.sequences
        lowest, highest = min(self.context_offsets), max(self.context_offsets)
        targets = []
        for s, frames in enumerate(sequences):
            split = self.reader.split_positions
            positions = range(len(frames)) if split is None else split[s]
            targets += [(s, p) for p in positions if p + lowest >= 0 and p + highest < len(frames)]
        if not targets:
            raise DatasetError(f"{self.reader.source}: no target frame has all context frames {self.context_offsets} "
                               f"inside its sequence ({sum(len(f) for f in sequences)} frames in {len(sequences)} "
                               "sequences)")
        return targets

    @property
    def has_depth(self) -> bool:
        return self.reader.has_depth

    @property
    def has_poses(self) -> bool:
        return self.reader.has_poses

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (they depend only on seed, epoch and index)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._targets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self._targets):
            raise IndexError(f"sample index {index} out of range for a dataset of {len(self._targets)}")
        s, p = self._targets[index]
        frames = self.reader.sequences[s]
        target = frames[p]
        offsets = self._target_offsets[index]
        context_frames = [frames[p + o] for o in offsets]

        target_rgb = self.reader.load_rgb(target)
        native_hw = target_rgb.shape[:2]
        sample: dict[str, Any] = {
            "image": image_to_tensor(resize_image(target_rgb, self.size_hw)),
            "context": torch.stack(
                [image_to_tensor(resize_image(self.reader.load_rgb(f), self.size_hw)) for f in context_frames]
            ),
            "context_offsets": torch.tensor(offsets, dtype=torch.int64),
            "K": resize_intrinsics(torch.tensor(target.K), native_hw, self.size_hw).float(),
        }
        if self.has_depth:
            depth = self.reader.load_depth(target)
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
        if self._caches:
            pairs = [self._caches[s].pair(p, p + o) for o in offsets]
            sample.update(self._match_tensors(pairs, native_hw))
        if self.augmentation is not None:
            sample = self._augment(sample, index)
        return sample

    def _match_tensors(self, pairs: list[PairMatches], native_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The cached pairs as padded tensors, pixels mapped from native to sample resolution (centres at integers)."""
        S, N = len(pairs), self.match_settings.max_matches
        scale = np.array([self.size_hw[1] / native_hw[1], self.size_hw[0] / native_hw[0]], dtype=np.float32)
        x_target = np.zeros((S, N, 2), dtype=np.float32)
        x_context = np.zeros((S, N, 2), dtype=np.float32)
        weight = np.zeros((S, N), dtype=np.float32)
        depth = np.zeros((S, N), dtype=np.float32)
        parallax = np.zeros((S, N), dtype=np.float32)
        for i, pair in enumerate(pairs):
            n = len(pair.x_target)
            x_target[i, :n] = (pair.x_target + 0.5) * scale - 0.5
            x_context[i, :n] = (pair.x_context + 0.5) * scale - 0.5
            weight[i, :n] = 1.0
            depth[i, :n] = pair.depth_target
            parallax[i, :n] = pair.parallax_deg
        return {"match_x_target": torch.from_numpy(x_target), "match_x_context": torch.from_numpy(x_context),
                "match_weight": torch.from_numpy(weight), "match_depth_target": torch.from_numpy(depth),
                "match_parallax_deg": torch.from_numpy(parallax),
                "essential_T_context_target": torch.from_numpy(np.stack([p.T_context_target for p in pairs])).float(),
                "essential_status": torch.tensor([p.status for p in pairs], dtype=torch.int64)}

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



class SequenceCollection(ConcatDataset):
    """Several sample datasets as one; forwards ``set_epoch`` so augmentation draws change per epoch.

    Each part keeps its own sample indices, so a sample's augmentation draw is that of its part.
    """

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets:
            dataset.set_epoch(epoch)
