"""A resumable, shardable epoch sampler: the data order is a pure function of (seed, epoch, rank)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Shuffled indices for one epoch, split across ``world_size`` ranks, able to start mid-epoch.

    ``torch.utils.data.DistributedSampler`` cannot skip the batches already seen before a crash; this one can, so a
    resumed run sees exactly the samples the uninterrupted run would have.

    Args:
        dataset_size: number of samples.
        seed: base seed; epoch ``e`` uses ``seed + e``.
        shuffle: permute each epoch.
        rank, world_size: this process' shard (every rank gets the same count; the tail is dropped).
    """

    def __init__(self, dataset_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        if dataset_size < world_size:
            raise ValueError(f"dataset has {dataset_size} samples, fewer than the {world_size} ranks")
        self.dataset_size = dataset_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_index = 0

    def set_position(self, epoch: int, start_index: int = 0) -> None:
        """Continue at sample ``start_index`` (counted on this rank) of ``epoch``."""
        self.epoch = epoch
        self.start_index = start_index

    def per_rank(self) -> int:
        return self.dataset_size // self.world_size

    def __len__(self) -> int:
        return max(self.per_rank() - self.start_index, 0)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_size, generator=generator)
        else:
            order = torch.arange(self.dataset_size)
        shard = order[: self.per_rank() * self.world_size][self.rank :: self.world_size]
        return iter(shard[self.start_index :].tolist())
