"""Run the streaming pipeline over a whole sequence, write its outputs and evaluate against ground truth."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..evaluate.depth_metrics import aggregate_depth_metrics, compute_depth_metrics
from ..evaluate.pose_metrics import absolute_trajectory_error, relative_pose_error
from ..inference import Pipeline, TrackingState
from ..inference.result import TIMING_STAGES
from .outputs import FrameWriter, plot_trajectory, write_metrics
from .sources import InputSequence

# MonoDepth2's evaluation range (KITTI); synthetic sky and missing scans are 0 and drop out.
EVAL_MIN_DEPTH = 1e-3
EVAL_MAX_DEPTH = 80.0
# Frames whose timings are left out of the speed figures (first-call allocation and graph warm-up).
WARMUP_FRAMES = 2


def _depth_metrics(gt: np.ndarray, pred: np.ndarray, median_scaling: bool) -> dict | None:
    valid = np.isfinite(pred) & (pred > 0)
    if not valid.all():
        pred = np.where(valid, pred, np.nanmedian(pred[valid]) if valid.any() else 1.0)
    try:
        return compute_depth_metrics(gt, pred, EVAL_MIN_DEPTH, EVAL_MAX_DEPTH, crop=None,
                                     median_scaling=median_scaling)
    except ValueError:  # no ground-truth pixel in range on this frame (all sky, no scan)
        return None


def run_sequence(pipeline: Pipeline, sequence: InputSequence, out_dir: Path, progress: bool = True) -> dict:
    """Process every frame of ``sequence`` with ``pipeline`` and write the outputs into ``out_dir`` (must exist).

    Returns:
        the metrics written to ``metrics.json``: ``speed`` (median ms per stage, FPS), ``tracking`` (frames per
        state), ``depth`` (median-scaled) and ``depth_metric`` (no scaling, camera-height mode only) when the
        sequence has depth, ``pose`` (ATE and RPE after Sim(3) alignment, and SE(3) when metric) when it has poses.
    """
    writer = FrameWriter(out_dir, len(sequence))
    recent_images: collections.OrderedDict[float, np.ndarray] = collections.OrderedDict()
    keep_images = pipeline.config.max_frames_lost_reference + 2
    timings = {stage: [] for stage in TIMING_STAGES}
    states, depth_scaled, depth_metric, references = [], [], [], []
    scale_sources = set()
    for frame in tqdm(sequence, total=len(sequence), desc=sequence.name, unit="frame", disable=not progress):
        result = pipeline.process(frame.rgb, frame.K, frame.stamp)
        reference_rgb = recent_images.get(result.reference_stamp)
        writer.add(frame.index, frame.rgb, result, reference_rgb)
        recent_images[result.stamp] = frame.rgb
        while len(recent_images) > keep_images:
            recent_images.popitem(last=False)
        if frame.index >= WARMUP_FRAMES:
            for stage in TIMING_STAGES:
                timings[stage].append(result.timings_ms[stage])
        states.append(result.tracking_state)
        scale_sources.add(result.scale_source)
        if frame.T_world_cam is not None:
            references.append(frame.T_world_cam)
        if frame.depth is not None:
            scaled = _depth_metrics(frame.depth, result.depth, median_scaling=True)
            if scaled is not None:
                depth_scaled.append(scaled)
            if result.scale_source == "camera_height":
                metric = _depth_metrics(frame.depth, result.depth, median_scaling=False)
                if metric is not None:
                    depth_metric.append(metric)
    writer.finish()

    T_est = np.stack(writer.poses)
    lost = np.array([s == TrackingState.LOST for s in states])
    T_ref = np.stack(references) if len(references) == len(T_est) else None
    try:
        plot_trajectory(out_dir / "trajectory.png", T_est, lost, T_ref, title=sequence.name)
    except ValueError:  # the ground truth admits no alignment: plot the estimate alone
        plot_trajectory(out_dir / "trajectory.png", T_est, lost, None, title=sequence.name)

    counted = {stage: values for stage, values in timings.items() if values}
    speed = {f"{stage}_ms": float(np.median(values)) for stage, values in counted.items()}
    if "total_ms" in speed:
        speed["fps"] = 1000.0 / speed["total_ms"]
    config = pipeline.config
    metrics: dict = {
        "sequence": sequence.name, "input_kind": sequence.kind, "frames": len(T_est),
        "checkpoint": str(pipeline.checkpoint), "provenance": pipeline.model.provenance,
        "backend": config.backend, "precision": pipeline.network_precision(), "device": config.device,
        "network_input_hw": list(pipeline.input_size),
        "scale_mode": config.scale_mode, "scale_sources": sorted(scale_sources),
        "speed": {**speed, "frames_timed": len(timings["total"]), "warmup_frames_excluded": WARMUP_FRAMES},
        "tracking": {state.value: int(sum(s == state for s in states)) for state in TrackingState},
    }
    if depth_scaled:
        metrics["depth"] = {**aggregate_depth_metrics(depth_scaled), "protocol": "per-image median scaling, "
                            f"{EVAL_MIN_DEPTH}-{EVAL_MAX_DEPTH} m, no crop, native resolution"}
    if depth_metric:
        metrics["depth_metric"] = {**aggregate_depth_metrics(depth_metric), "protocol": "no scaling (camera height)"}
    if T_ref is not None and len(T_est) >= 3:
        path_length = float(np.sum(np.linalg.norm(np.diff(T_ref[:, :3, 3], axis=0), axis=1)))
        try:
            ate = absolute_trajectory_error(T_est, T_ref, "sim3")
            rpe = relative_pose_error(T_est, T_ref, delta=1, alignment="sim3")
            metrics["pose"] = {"ate_rmse_m": ate["rmse"], "ate_alignment": "sim3", "sim3_scale": ate["scale"],
                               "rpe_trans_rmse_m": rpe["translation"]["rmse"],
                               "rpe_rot_rmse_deg": rpe["rotation_deg"]["rmse"], "path_length_m": path_length}
            if "camera_height" in scale_sources:
                metrics["pose"]["ate_se3_rmse_m"] = absolute_trajectory_error(T_est, T_ref, "se3")["rmse"]
        except ValueError as exc:  # e.g. a ground truth without extent (standing still): no alignment exists
            metrics["pose"] = {"error": f"trajectory metrics undefined: {exc}", "path_length_m": path_length}
    write_metrics(out_dir / "metrics.json", metrics)
    return metrics


def summary_table(metrics: dict) -> str:
    """One Markdown table row per headline number of a run."""
    rows = [("frames", f"{metrics['frames']}"),
            ("speed", f"{metrics['speed'].get('fps', float('nan')):.1f} FPS "
                      f"({metrics['speed'].get('total_ms', float('nan')):.1f} ms/frame median, {metrics['backend']}, "
                      f"{metrics['network_input_hw'][1]}x{metrics['network_input_hw'][0]})")]
    stages = ", ".join(f"{stage} {metrics['speed'][f'{stage}_ms']:.1f}" for stage in TIMING_STAGES[:-1]
                       if f"{stage}_ms" in metrics["speed"])
    rows.append(("ms per stage", stages))
    tracking = metrics["tracking"]
    rows.append(("tracking", ", ".join(f"{k} {v}" for k, v in tracking.items() if v)))
    if "pose" in metrics and "error" in metrics["pose"]:
        rows.append(("ATE", metrics["pose"]["error"]))
    elif "pose" in metrics:
        pose = metrics["pose"]
        rows.append(("ATE (Sim3)", f"{pose['ate_rmse_m']:.3f} m over a {pose['path_length_m']:.1f} m path"))
        rows.append(("RPE", f"{pose['rpe_trans_rmse_m']:.3f} m, {pose['rpe_rot_rmse_deg']:.3f} deg per frame"))
        if "ate_se3_rmse_m" in pose:
            rows.append(("ATE (SE3, metric)", f"{pose['ate_se3_rmse_m']:.3f} m"))
    if "depth" in metrics:
        depth = metrics["depth"]
        rows.append(("depth abs_rel", f"{depth['abs_rel']:.3f} (a1 {depth['a1']:.3f}, median-scaled)"))
    if "depth_metric" in metrics:
        rows.append(("depth abs_rel metric", f"{metrics['depth_metric']['abs_rel']:.3f} (camera-height scale)"))
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"| {'-' * width} | --- |"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)
