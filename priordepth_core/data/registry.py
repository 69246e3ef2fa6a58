"""Datasets by name: the registry of readers, and the train / test sample datasets an experiment's config names.

Adding a dataset is one reader file (a :class:`~priordepth_core.data.frames.FrameReader` subclass with the two
members of :class:`RegisteredReader`) and one line in :data:`READERS`; the sampler
(:class:`~priordepth_core.data.sample.FrameSamples`) turns its frames into training and evaluation samples.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch.utils.data import Dataset

from .errors import DatasetError
from .frames import FrameReader
from .kitti_odometry import KittiOdometryReader
from .kitti_raw import KittiRawReader
from .match_cache import MatchCacheSettings
from .rosbag import RosbagReader
from .sample import Augmentation, FrameSamples, SequenceCollection
from .suite import SyntheticSuiteReader
from .tum_rgbd import TumRgbdReader


class RegisteredReader(Protocol):
    """What the registry needs of a reader class besides being a :class:`FrameReader`."""

    held_out_test: bool
    """The dataset has a held-out test split with ground truth (False: the trainer gets no test set)."""

    @classmethod
    def for_split(cls, data: Any, split: str) -> list[FrameReader]:
        """The readers of the ``"train"`` or ``"test"`` split from the experiment's ``data`` config section
        (``priordepth_core.train.config.DataConfig``); each becomes one sample dataset.

        Raises:
            DatasetError: the data is missing or malformed (the message names the file).
        """


# data.kind -> reader class.
READERS: dict[str, type[RegisteredReader]] = {
    "suite": SyntheticSuiteReader,
    "tum": TumRgbdReader,
    "kitti_odometry": KittiOdometryReader,
    "kitti_raw": KittiRawReader,
    "rosbag": RosbagReader,
}


def build_split(data: Any, split: str, augment: bool = False, seed: int = 0,
                depth_at_native_resolution: bool = False) -> Dataset:
    """Samples of the ``train`` or ``test`` split of the configured data.

    Args:
        data: the experiment's ``data`` config section: ``kind`` (a :data:`READERS` name), ``height``, ``width``,
            ``context_offsets``, the fields the reader reads and, when present, the match cache's (``match_cache``,
            ``keypoints``, ``max_context_offset``, ``max_matches``, ``min_context_parallax_px``, ``match_cache_dir``).
        split: ``"train"`` or ``"test"``.
        augment: apply the training augmentation, drawn from ``seed``.
        seed: augmentation seed.
        depth_at_native_resolution: keep ``depth_gt`` at the dataset's resolution (evaluation).

    Returns:
        One :class:`FrameSamples` per reader of the split, several as a :class:`SequenceCollection`.

    Raises:
        DatasetError: an unknown kind, or data missing or malformed (raised before any training starts).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    reader_class = READERS.get(data.kind)
    if reader_class is None:
        raise DatasetError(f"unknown data.kind {data.kind!r}; choose one of {', '.join(READERS)}")
    augmentation = Augmentation(seed=seed) if augment else None
    match_settings = (MatchCacheSettings(keypoints=data.keypoints, max_offset=data.max_context_offset,
                                         max_matches=data.max_matches)
                      if getattr(data, "match_cache", False) else None)
    min_parallax = getattr(data, "min_context_parallax_px", 0.0)
    parts = [FrameSamples(reader, (data.height, data.width), tuple(data.context_offsets),
                          depth_at_native_resolution=depth_at_native_resolution, augmentation=augmentation,
                          match_settings=match_settings,
                          min_context_parallax_px=min_parallax if match_settings is not None and min_parallax > 0
                          else None, cache_dir=getattr(data, "match_cache_dir", "") or None)
             for reader in reader_class.for_split(data, split)]
    return parts[0] if len(parts) == 1 else SequenceCollection(parts)


def build_datasets(data: Any, seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """(train, test) sample datasets; test is None where the data has no held-out split (a user's rosbag)."""
    train = build_split(data, "train", augment=data.augment, seed=seed)
    if not READERS[data.kind].held_out_test:
        return train, None
    return train, build_split(data, "test")
