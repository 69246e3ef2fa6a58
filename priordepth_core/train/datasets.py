"""Build the training and test datasets an experiment's ``data`` section describes."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from ..data import (
    Augmentation,
    DatasetError,
    KittiOdometryDataset,
    KittiRawDataset,
    RosbagDataset,
    TumRgbdDataset,
)
from .config import DataConfig


class SequenceCollection(ConcatDataset):
    """Several sequences as one dataset; forwards ``set_epoch`` so augmentation draws change per epoch."""

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)


def _suite_split(data: DataConfig, split: str, augmentation: Augmentation | None,
                 depth_at_native_resolution: bool) -> Dataset:
    from ..data.synthetic.suites import ensure_suite, load_manifest

    root = Path(ensure_suite(data.suite, progress=True))
    sequences = [entry["path"] for entry in load_manifest(root)["splits"][split]]
    if not sequences:
        raise DatasetError(f"suite {data.suite!r} has no {split} sequences in {root / 'suite.json'}")
    size = (data.height, data.width)
    return SequenceCollection([
        TumRgbdDataset(root / name, size, tuple(data.context_offsets), augmentation=augmentation,
                       depth_at_native_resolution=depth_at_native_resolution)
        for name in sequences
    ])


def build_split(data: DataConfig, split: str, augment: bool = False, seed: int = 0,
                depth_at_native_resolution: bool = False) -> Dataset:
    """The ``train`` or ``test`` split of the configured data.

    Raises:
        DatasetError: the data is missing or malformed (raised before any training starts).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    augmentation = Augmentation(seed=seed) if augment else None
    size = (data.height, data.width)
    offsets = tuple(data.context_offsets)
    if data.kind == "suite":
        return _suite_split(data, split, augmentation, depth_at_native_resolution)
    if not data.path:
        raise DatasetError(f"data.path must name the dataset for data.kind={data.kind!r}")
    if data.kind == "tum":
        # One TUM sequence trains; evaluate on another sequence with ``python -m priordepth_core.evaluate``.
        return TumRgbdDataset(data.path, size, offsets, augmentation=augmentation,
                              depth_at_native_resolution=depth_at_native_resolution)
    if data.kind == "kitti_odometry":
        sequences = data.train_sequences if split == "train" else data.test_sequences
        return KittiOdometryDataset(data.path, sequences, size, offsets, augmentation=augmentation,
                                    depth_at_native_resolution=depth_at_native_resolution)
    if data.kind == "kitti_raw":
        split_file = data.split_file if split == "train" else data.test_split_file
        if not split_file:
            raise DatasetError(f"data.{'split_file' if split == 'train' else 'test_split_file'} is required for "
                               f"kitti_raw")
        return KittiRawDataset(data.path, split_file, size, offsets, with_depth=split == "test",
                               depth_at_native_resolution=depth_at_native_resolution, augmentation=augmentation)
    if data.kind == "rosbag":
        return RosbagDataset(data.path, data.image_topic, data.camera_info_topic, size, offsets,
                             augmentation=augmentation)
    raise DatasetError(f"unknown data.kind {data.kind!r}")


def build_datasets(data: DataConfig, seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """(train, test) datasets; test is None where the data has no held-out depth (a user's rosbag)."""
    train = build_split(data, "train", augment=data.augment, seed=seed)
    if data.kind in ("rosbag", "tum"):
        return train, None
    return train, build_split(data, "test")
