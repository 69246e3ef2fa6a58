"""Run a depth network over a dataset and score it with the MonoDepth2 protocol."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .depth_metrics import aggregate_depth_metrics, compute_depth_metrics


@torch.no_grad()
def predict_depths(depth_net: nn.Module, dataset: Dataset, device: torch.device | str = "cpu", batch_size: int = 8,
                   max_samples: int | None = None):
    """Yield ``(sample_index, predicted depth (H, W) numpy, ground truth (H0, W0) numpy)`` for samples with depth."""
    was_training = depth_net.training
    depth_net.eval()
    count = 0
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
            if "depth_gt" not in batch:
                raise ValueError("the dataset yields no 'depth_gt': depth cannot be evaluated on it")
            depth = depth_net(batch["image"].to(device))["depth"][0]  # (B, 1, H, W)
            for pred, gt in zip(depth[:, 0].float().cpu().numpy(), batch["depth_gt"][:, 0].numpy()):
                yield count, pred, gt
                count += 1
                if max_samples is not None and count >= max_samples:
                    return
    finally:
        depth_net.train(was_training)


def evaluate_depth_model(depth_net: nn.Module, dataset: Dataset, device: torch.device | str = "cpu",
                         min_depth: float = 1e-3, max_depth: float = 80.0, crop: str | None = None,
                         median_scaling: bool = True, max_samples: int | None = None) -> dict[str, float]:
    """Mean depth metrics of ``depth_net`` on every sample of ``dataset`` that has ground-truth depth.

    Args:
        depth_net: maps (B, 3, H, W) images to ``{"depth": [(B, 1, H, W), ...]}``.
        dataset: yields the sample dict with ``depth_gt``.
        min_depth, max_depth: evaluation range in metres (MonoDepth2 KITTI: 1e-3, 80).
        crop: ``"garg"`` for the KITTI Eigen split, None elsewhere.
        median_scaling: per-image median scaling (monocular models have no metric scale).
        max_samples: evaluate at most this many samples.

    Returns:
        abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3 (means over images) and the median-scaling ratio summary.
    """
    per_image = []
    for _, pred, gt in predict_depths(depth_net, dataset, device, max_samples=max_samples):
        if not ((gt > min_depth) & (gt < max_depth)).any():
            continue
        per_image.append(compute_depth_metrics(gt, pred, min_depth=min_depth, max_depth=max_depth, crop=crop,
                                               median_scaling=median_scaling))
    if not per_image:
        raise ValueError("no sample with ground-truth depth inside the evaluation range")
    return aggregate_depth_metrics(per_image)
