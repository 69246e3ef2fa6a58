"""Depth error metrics under MonoDepth2's KITTI protocol (``evaluate_depth.py``).

Per image: resize the prediction to the ground truth's size (bilinear, in disparity space as MonoDepth2 does with
``cv2.resize`` on the disparity), keep ground truth in ``(min_depth, max_depth)`` inside the crop, optionally scale
by ``median(gt) / median(pred)`` (monocular), clamp the prediction to ``[min_depth, max_depth]`` after scaling, then
abs_rel, sq_rel, rmse, rmse_log and the threshold accuracies a1/a2/a3. Metrics are averaged over images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")

# Crops as fractions of (top, bottom, left, right): Garg et al. ECCV 2016 (MonoDepth2's "eigen" split evaluation),
# and the crop MonoDepth (v1) found to reproduce Eigen et al. NIPS 2014.
CROPS = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}

CropName = Literal["garg", "eigen"]


def compute_depth_errors(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MonoDepth2's ``compute_errors`` on matching 1-D arrays of valid, positive depths.

    Args:
        gt: (P,) ground-truth depths.
        pred: (P,) predicted depths (already masked, scaled and clamped).

    Returns:
        ``abs_rel``, ``sq_rel``, ``rmse``, ``rmse_log``, ``a1``, ``a2``, ``a3`` (a_k: share with
        ``max(gt/pred, pred/gt) < 1.25**k``).
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if gt.shape != pred.shape or gt.ndim != 1 or gt.size == 0:
        raise ValueError(f"gt and pred must be non-empty 1-D arrays of one shape, got {gt.shape} and {pred.shape}")
    thresh = np.maximum(gt / pred, pred / gt)
    return {
        "abs_rel": float(np.mean(np.abs(gt - pred) / gt)),
        "sq_rel": float(np.mean((gt - pred) ** 2 / gt)),
        "rmse": float(np.sqrt(np.mean((gt - pred) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "a1": float(np.mean(thresh < 1.25)),
        "a2": float(np.mean(thresh < 1.25**2)),
        "a3": float(np.mean(thresh < 1.25**3)),
    }


def crop_mask(height: int, width: int, crop: CropName | None) -> np.ndarray:
    """(H, W) bool mask of the evaluation crop (all True for ``None``), rounded as MonoDepth2 (``astype(int32)``)."""
    if crop is None:
        return np.ones((height, width), dtype=bool)
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {sorted(CROPS)} or None, got {crop!r}")
    top, bottom, left, right = (np.array(CROPS[crop]) * [height, height, width, width]).astype(np.int32)
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def resize_prediction(pred: np.ndarray, height: int, width: int, kind: Literal["depth", "disparity"] = "depth"
                      ) -> np.ndarray:
    """Resize a prediction to ``(height, width)`` as MonoDepth2: bilinear ``cv2.resize`` on the disparity.

    Args:
        pred: (h, w) positive depth or disparity.
        height, width: target size.
        kind: what ``pred`` holds; depth is inverted, resized and inverted back.

    Returns:
        (height, width) float64 depth.
    """
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim != 2:
        raise ValueError(f"pred must have shape (h, w), got {pred.shape}")
    if not np.all(np.isfinite(pred)) or np.any(pred <= 0):
        raise ValueError(f"pred must be finite and positive ({kind}); got min {pred.min()}")
    if kind not in ("depth", "disparity"):
        raise ValueError(f"kind must be 'depth' or 'disparity', got {kind!r}")
    disparity = 1.0 / pred if kind == "depth" else pred
    if disparity.shape != (height, width):
        disparity = cv2.resize(disparity, (width, height), interpolation=cv2.INTER_LINEAR)
    return 1.0 / disparity


def compute_depth_metrics(gt: np.ndarray, pred: np.ndarray, min_depth: float = 1e-3, max_depth: float = 80.0,
                          crop: CropName | None = "garg", median_scaling: bool = True,
                          pred_kind: Literal["depth", "disparity"] = "depth",
                          scale_factor: float = 1.0) -> dict[str, float]:
    """Depth metrics of one image under MonoDepth2's protocol.

    Args:
        gt: (H, W) ground-truth depth in metres, 0 (or anything outside the range) = no measurement.
        pred: (h, w) predicted depth (or disparity, see ``pred_kind``), any size; resized to (H, W).
        min_depth, max_depth: valid ground-truth range (open interval) and the prediction clamp (1e-3, 80 on KITTI).
        crop: ``"garg"`` (MonoDepth2's Eigen-split evaluation), ``"eigen"``, or None. MonoDepth2 applies the range
            mask only with the crop and uses ``gt > 0`` otherwise; here the range mask always applies (pass
            ``min_depth=0, max_depth=np.inf`` for that behaviour, no clamping then takes effect).
        median_scaling: multiply the prediction by ``median(gt) / median(pred)`` over the mask (monocular).
        pred_kind: ``"depth"`` or ``"disparity"``.
        scale_factor: fixed factor applied before median scaling (MonoDepth2 stereo: 5.4).

    Returns:
        the seven metrics of :func:`compute_depth_errors`, plus ``ratio`` (the median-scaling ratio, 1.0 when off)
        and ``num_pixels`` (evaluated pixels).

    Raises:
        ValueError: wrong shapes, a non-positive prediction, or no ground-truth pixel left after masking.
    """
    gt = np.asarray(gt, dtype=np.float64)
    if gt.ndim != 2:
        raise ValueError(f"gt must have shape (H, W), got {gt.shape}")
    height, width = gt.shape
    pred_depth = resize_prediction(pred, height, width, pred_kind)
    mask = (gt > min_depth) & (gt < max_depth) & crop_mask(height, width, crop)
    if not mask.any():
        raise ValueError("no ground-truth pixel inside the depth range and crop")
    gt_valid = gt[mask]
    pred_valid = pred_depth[mask] * scale_factor
    ratio = 1.0
    if median_scaling:
        ratio = float(np.median(gt_valid) / np.median(pred_valid))
        pred_valid = pred_valid * ratio
    pred_valid = np.clip(pred_valid, min_depth, max_depth)
    metrics = compute_depth_errors(gt_valid, pred_valid)
    metrics["ratio"] = ratio
    metrics["num_pixels"] = int(mask.sum())
    return metrics


def aggregate_depth_metrics(per_image: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over images, and MonoDepth2's scale-ratio summary.

    Args:
        per_image: dicts from :func:`compute_depth_metrics`.

    Returns:
        the mean of each of the seven metrics, ``num_images``, and from the ratios ``ratio_median`` and
        ``ratio_std`` (``std(ratios / median)``, the two numbers MonoDepth2 prints) plus ``ratio_mean``.
    """
    if len(per_image) == 0:
        raise ValueError("per_image is empty")
    result = {name: float(np.mean([m[name] for m in per_image])) for name in DEPTH_METRIC_NAMES}
    ratios = np.array([m.get("ratio", 1.0) for m in per_image], dtype=np.float64)
    median = float(np.median(ratios))
    result.update(num_images=len(per_image), ratio_median=median, ratio_std=float(np.std(ratios / median)),
                  ratio_mean=float(np.mean(ratios)))
    return result
