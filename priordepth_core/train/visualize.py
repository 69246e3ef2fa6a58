"""TensorBoard pictures of a training step: target, depth, warped context, photometric error and matches."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..visualize import colorize_depth, draw_matches, image_grid, to_uint8_image


def training_images(batch: dict[str, Any], outputs: dict[str, Any], metrics: dict[str, Any],
                    index: int = 0) -> dict[str, np.ndarray]:
    """(H, W, 3) uint8 pictures of the first sample of a batch, keyed by TensorBoard tag."""
    target = to_uint8_image(batch["image"][index])
    depth = colorize_depth(outputs["depth"][0][index, 0])
    row_top = [target, depth]
    if "depth_gt" in batch and batch["depth_gt"].shape[-2:] == batch["image"].shape[-2:]:
        row_top.append(colorize_depth(batch["depth_gt"][index, 0]))
    rows = [row_top]
    if "visual/warped" in metrics:
        warped = [to_uint8_image(w) for w in metrics["visual/warped"][index]]
        error = metrics.get("photometric/min_error")
        error_image = (colorize_depth(1.0 / (error[index, 0].float().clamp_min(1e-4)), vmax_percentile=99)
                       if error is not None else np.zeros_like(target))
        rows.append([*warped, error_image])
    images = {"step/target_depth_warped_error": image_grid(rows)}
    if "matches" in outputs:
        match = outputs["matches"][0]
        keep = match["weights"][index] > 0
        context = to_uint8_image(batch["context"][index, 0])
        images["step/matches_context0"] = draw_matches(
            target, context, match["x_target"][index][keep].detach().cpu().numpy(),
            match["x_context"][index][keep].detach().cpu().numpy(), match["inliers"][index][keep].cpu().numpy())
    return images
