"""What the offline runner writes: depth PNGs, pictures, the trajectory, its plot and the metrics.

Output folder layout::

    depth/<frame>.png         16-bit depth in millimetres (0 = invalid; depth beyond 65.535 m saturates)
    depth_color/<frame>.png   colourised inverse depth (priordepth_core.visualize.colorize_depth)
    matches/<frame>.png       reference | current image with the matches (inliers green, outliers red)
    overview.png              a few frames: image | depth, above the matches
    trajectory.txt            TUM format "stamp tx ty tz qx qy qz qw" of T_odom_curr (odom = first camera)
    trajectory.png            top view of the trajectory; with ground truth, both after Sim(3) alignment
    frames.csv                per frame: stamp, tracking state, inliers, scale, per-stage milliseconds, message
    metrics.json              speed, tracking statistics, depth (MonoDepth2 protocol) and pose (ATE/RPE) metrics
    .priordepth-infer         marker: the runner wrote this folder, so ``--overwrite`` may replace it
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import matplotlib
import numpy as np

from ..data.trajectory_io import write_tum_trajectory
from ..evaluate.pose_metrics import align_trajectory
from ..inference.result import TIMING_STAGES, FrameResult
from ..visualize import colorize_depth, draw_matches, image_grid

PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]
MILLIMETRES_PER_METRE = 1000.0
OVERVIEW_ROWS = 3
# The overview is for looking at, not measuring: its tiles are shrunk to at most this width.
OVERVIEW_TILE_WIDTH = 640
# Match pictures draw at most this many matches, evenly spread, so that lines stay readable.
MAX_MATCH_LINES = 100
# --overwrite replaces only folders holding this file, never a folder of the user's that happens to be named --out.
OUTPUT_MARKER = ".priordepth-infer"


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) RGB or (H, W) single-channel image; raises OSError when it cannot."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image, PNG_PARAMS):
        raise OSError(f"{path}: cannot write PNG")


def depth_to_millimetres(depth: np.ndarray) -> np.ndarray:
    """(H, W) metres (NaN/<= 0 invalid) -> uint16 millimetres, 0 = invalid, saturated at 65535."""
    mm = np.nan_to_num(depth.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0) * MILLIMETRES_PER_METRE
    mm = np.clip(np.round(mm), 0, np.iinfo(np.uint16).max)
    return mm.astype(np.uint16)


def match_picture(reference_rgb: np.ndarray, rgb: np.ndarray, result: FrameResult) -> np.ndarray:
    """Reference and current image side by side with the matches of ``result`` drawn."""
    if reference_rgb.shape != rgb.shape:
        reference_rgb = cv2.resize(reference_rgb, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
    if len(result.matches) == 0:
        return draw_matches(reference_rgb, rgb, np.zeros((0, 2)), np.zeros((0, 2)))
    points1 = result.previous_keypoints[result.matches[:, 0]]
    points2 = result.keypoints[result.matches[:, 1]]
    return draw_matches(reference_rgb, rgb, points1, points2, result.match_inliers, max_lines=MAX_MATCH_LINES)


class FrameWriter:
    """Writes the per-frame files and keeps what the summary files need."""

    def __init__(self, folder: Path, total_frames: int):
        self.folder = folder
        for name in ("depth", "depth_color", "matches"):
            (folder / name).mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []
        self.stamps: list[float] = []
        self.poses: list[np.ndarray] = []
        overview_every = max(1, total_frames // OVERVIEW_ROWS)
        self._overview_at = {min(total_frames - 1, 1 + i * overview_every) for i in range(OVERVIEW_ROWS)}
        self.overview: list[list[np.ndarray]] = []

    def add(self, index: int, rgb: np.ndarray, result: FrameResult, reference_rgb: np.ndarray | None) -> None:
        name = f"{index:06d}.png"
        write_png(self.folder / "depth" / name, depth_to_millimetres(result.depth))
        color = colorize_depth(result.depth)
        write_png(self.folder / "depth_color" / name, color)
        matches = None
        if reference_rgb is not None:
            matches = match_picture(reference_rgb, rgb, result)
            write_png(self.folder / "matches" / name, matches)
        if index in self._overview_at and matches is not None:
            # Tiles of one width (2 W): image beside its depth, then the matches to the reference frame.
            for tile in (np.concatenate([rgb, color], axis=1), matches):
                if tile.shape[1] > OVERVIEW_TILE_WIDTH:
                    size = (OVERVIEW_TILE_WIDTH, round(tile.shape[0] * OVERVIEW_TILE_WIDTH / tile.shape[1]))
                    tile = cv2.resize(tile, size, interpolation=cv2.INTER_AREA)
                self.overview.append([tile])
        self.stamps.append(result.stamp)
        self.poses.append(result.T_odom_curr)
        row = {"frame": index, "stamp": f"{result.stamp:.6f}", "state": result.tracking_state.value,
               "matches": len(result.matches), "inliers": result.num_inliers, "scale": f"{result.scale:.6g}",
               "scale_source": result.scale_source}
        row.update({f"{stage}_ms": f"{result.timings_ms.get(stage, 0.0):.3f}" for stage in TIMING_STAGES})
        row["message"] = result.message
        self.rows.append(row)

    def finish(self) -> None:
        """Write frames.csv, trajectory.txt and overview.png."""
        with open(self.folder / "frames.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        write_tum_trajectory(self.folder / "trajectory.txt", np.array(self.stamps), np.stack(self.poses))
        if self.overview:
            write_png(self.folder / "overview.png", image_grid(self.overview))


def _principal_plane(positions: np.ndarray) -> np.ndarray:
    """(3, 2) the two directions of largest spread (a top view for ground vehicles, the main plane otherwise)."""
    centred = positions - positions.mean(axis=0)
    if not np.any(centred):
        return np.eye(3)[:, :2]
    return np.linalg.svd(centred, full_matrices=False)[2][:2].T


def plot_trajectory(path: Path, T_odom_est: np.ndarray, lost: np.ndarray, T_world_ref: np.ndarray | None = None,
                    title: str = "") -> None:
    """Top view of the estimated trajectory (lost frames marked), with the ground truth after Sim(3) alignment."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 5), dpi=100)
    if T_world_ref is not None and len(T_world_ref) >= 3:
        aligned, info = align_trajectory(T_odom_est, T_world_ref, "sim3")
        basis = _principal_plane(T_world_ref[:, :3, 3])
        ref_2d = T_world_ref[:, :3, 3] @ basis
        est_2d = aligned[:, :3, 3] @ basis
        axes.plot(ref_2d[:, 0], ref_2d[:, 1], "k--", lw=1.5, label="ground truth")
        axes.plot(est_2d[:, 0], est_2d[:, 1], "-", color="tab:blue", lw=1.5,
                  label=f"PriorDepth (Sim(3)-aligned, scale {info['scale']:.3g})")
        unit = "m (ground-truth frame)"
    else:
        # Camera frame of the first image: x right, z forward -> a top view for a forward-looking camera.
        est_2d = T_odom_est[:, [0, 2], 3]
        axes.plot(est_2d[:, 0], est_2d[:, 1], "-", color="tab:blue", lw=1.5, label="PriorDepth")
        unit = "odometry frame (x right, z forward)"
    if np.any(lost):
        axes.plot(est_2d[lost, 0], est_2d[lost, 1], "x", color="tab:red", label="tracking lost")
    axes.plot(est_2d[:1, 0], est_2d[:1, 1], "o", color="tab:green", label="start")
    axes.set_aspect("equal", adjustable="datalim")
    axes.set_xlabel(unit)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_output_marker(folder: Path) -> None:
    (folder / OUTPUT_MARKER).write_text("Written by python -m priordepth_core.infer (priordepth-infer); its "
                                        "--overwrite replaces only folders holding this file.\n")


def write_metrics(path: Path, metrics: dict) -> None:
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float) + "\n")
