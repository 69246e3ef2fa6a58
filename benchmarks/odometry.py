"""Trajectory accuracy of the streaming Pipeline against a classical ORB + 5-point chain, per synthetic suite.

    python benchmarks/odometry.py [--suites handheld indoor-slow driving demo] [--max-frames N]
                                  [--backend openvino] [--precision auto] [--configs f2f f2f/checked ...]
                                  [--model driving|indoor|FILE] [--all-test-seeds] [--json OUT.json]
                                  [--keypoint-checkpoint FILE]

Sequences: the test sequence (first seed) of each synthetic suite (``handheld``, ``indoor-slow``, ``driving``;
rendered in memory exactly as ``suite:NAME:test:SEED`` of ``python -m priordepth_core.infer`` writes them) and the
demo sequence of ``make demo`` (street, car, 60 frames at 640x192, seed 900). ``--max-frames`` keeps the first N
frames of each (the path is the full sequence's).

Per sequence the shipped model that fits the camera (``indoor`` for handheld and indoor-slow, ``driving`` for driving
and the demo; ``--model`` overrides; ``--keypoint-checkpoint`` replaces its KeypointNet, as the Pipeline's
``keypoint_checkpoint`` does) runs its networks once (their outputs are replayed to every configuration, so the
configurations differ only in what follows the networks), and the same frames go through:

- ``orb``: ORB (2000 features) + OpenCV's 5-point RANSAC essential matrix + ``recoverPose`` per consecutive pair at
  the native resolution, chained; the translation length from the same depth source as the Pipeline (the median
  ratio of the Pipeline's predicted depth to the triangulated depth of the inliers); a failed pair repeats the last
  motion;
- ``f2f``: the defaults: the Pipeline tracking frame to frame without the window (``keyframe_parallax_px=0
  window_ba=false``);
- ``kf``: frame-to-keyframe tracking, keyframes at 8 px parallax, without the window (``window_ba=false``);
- ``kf+ba``: the same keyframes refined by the sliding-window bundle adjustment;
- ``f2f+ba``: every frame a keyframe, refined by the window (``window_ba=true``);
- ``f2f/poselib``: the defaults with poselib's PnP and relative pose (``pose_source=poselib_pnp_essential``);
- ``f2f/checked``: poselib's PnP kept only where it agrees with poselib's relative pose on the epipolar geometry
  (``pose_source=poselib_pnp_checked``).

``--all-test-seeds`` adds each suite's second test sequence. ``--configs`` runs a subset (``f2f`` always runs: the
goal is judged on it). The networks run in the backend and precision of the Pipeline's defaults unless
``--backend`` / ``--precision`` say otherwise.

Metrics (``evaluate/pose_metrics.py``, evo's definitions): ATE RMSE after a Sim(3) alignment (monocular: the depth's
scale is not judged) and RPE over one frame (translation RMSE in metres after the same scale, rotation RMSE in
degrees). The table gives each, ``f2f / orb`` of the ATE (the defaults against ORB), and whether the goal
(<= 0.8) is met; the command exits 1 when it is not met on every sequence.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from priordepth_core.atomic_output import atomic_output
from priordepth_core.data.synthetic import SUITES, Renderer, SequenceSpec, make_sequence
from priordepth_core.data.synthetic.sequence import render_frames
from priordepth_core.evaluate.trajectory_eval import (
    ORB_CHEIRALITY_DISTANCE,
    ORB_FEATURES,
    ORB_MIN_MATCHES,
    ORB_RANSAC_THRESHOLD_PX,
    chain_relative_poses,
    trajectory_metrics,
)
from priordepth_core.inference import NetworkBackend, Pipeline, PipelineConfig, create_backend
from priordepth_core.inference.model_file import load_inference_model, model_path

GOAL_RATIO = 0.8
# The demo sequence of `make demo`.
DEMO_SPEC = SequenceSpec("street", "car", 60, 640, 192, 900)
CONFIGURATIONS = {
    "f2f": {},  # the defaults: keyframe_parallax_px=0, window_ba=false
    "kf": {"keyframe_parallax_px": 8.0, "window_ba": False},
    "kf+ba": {"keyframe_parallax_px": 8.0, "window_ba": True},
    "f2f+ba": {"keyframe_parallax_px": 0.0, "window_ba": True},
    "f2f/poselib": {"pose_source": "poselib_pnp_essential"},
    "f2f/checked": {"pose_source": "poselib_pnp_checked"},
}
DEFAULT = "f2f"
# Fewest inliers with a positive triangulated and predicted depth for the ORB chain's translation length.
MIN_SCALE_POINTS = 5


@dataclass
class Sequence:
    name: str
    frames: list[np.ndarray]  # (H, W, 3) uint8
    K: np.ndarray
    stamps: np.ndarray
    T_world_cam: np.ndarray  # (N, 4, 4) ground truth


def load_sequence(name: str, max_frames: int, seed: int | None = None) -> Sequence:
    """The suite's test sequence ``seed`` (default its first; or the demo), rendered in memory, first ``max_frames``
    frames (0 = all)."""
    if name == "demo":
        spec = DEMO_SPEC
    else:
        suite = SUITES[name]
        seed = suite.test_seeds[0] if seed is None else seed
        spec = SequenceSpec(suite.scene, suite.motion, suite.frames, suite.width, suite.height, seed)
    sequence = make_sequence(spec)
    count = min(max_frames or spec.frames, spec.frames)
    frames = []
    with Renderer(spec.width, spec.height) as renderer:
        for index, rgb, _ in render_frames(sequence, renderer):
            if index >= count:
                break
            frames.append(rgb)
    label = "demo" if name == "demo" else f"{name}:test:{spec.seed}"
    return Sequence(label, frames, sequence.K, np.asarray(sequence.trajectory.stamps[:count]),
                    np.asarray(sequence.trajectory.T_world_cam[:count]))


class ReplayBackend(NetworkBackend):
    """Runs the networks once per distinct image and replays their outputs (every configuration sees the same)."""

    name = "replay"

    def __init__(self, inner: NetworkBackend):
        super().__init__(inner.input_size)
        self.inner = inner
        self.cache: dict[tuple[str, str], object] = {}
        self.network_ms: list[float] = []

    def _cached(self, kind: str, image: torch.Tensor, run):
        key = (kind, hashlib.sha1(image.numpy().tobytes()).hexdigest())
        if key not in self.cache:
            start = time.perf_counter()
            self.cache[key] = run(image)
            self.network_ms.append((time.perf_counter() - start) * 1e3)
        return self.cache[key]

    def depth(self, image: torch.Tensor) -> torch.Tensor:
        return self._cached("depth", image, self.inner.depth)

    def keypoints(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._cached("keypoints", image, self.inner.keypoints)


def run_pipeline(sequence: Sequence, backend: ReplayBackend, overrides: dict,
                 checkpoint: str | None = None) -> tuple[np.ndarray, list, dict]:
    """(N, 4, 4) T_odom_curr, the depth maps, and counts (keyframes, lost frames, median pose-stage ms)."""
    pipeline = Pipeline(PipelineConfig().replace(**overrides), checkpoint=checkpoint, backend=backend)
    poses, depths, pose_ms, keyframes, lost = [], [], [], 0, 0
    for rgb, stamp in zip(sequence.frames, sequence.stamps):
        result = pipeline.process(rgb, sequence.K, float(stamp))
        poses.append(result.T_odom_curr)
        depths.append(result.depth)
        pose_ms.append(result.timings_ms["pose"])
        keyframes += int(result.keyframe)
        lost += int(result.tracking_state.value == "lost")
    return np.stack(poses), depths, {"keyframes": keyframes, "lost_frames": lost,
                                     "pose_ms_median": statistics.median(pose_ms)}


def orb_chain(sequence: Sequence, depths: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """ORB + 5-point chain with the translation length from ``depths`` (see the module docstring)."""
    orb = cv2.ORB_create(nfeatures=ORB_FEATURES)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    K = sequence.K
    features = [orb.detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None) for rgb in sequence.frames]
    poses, valid = [], []
    for index in range(1, len(sequence.frames)):
        (kp_prev, desc_prev), (kp_curr, desc_curr) = features[index - 1], features[index]
        T, ok = np.eye(4), False
        if desc_prev is not None and desc_curr is not None:
            matches = matcher.match(desc_curr, desc_prev)
            if len(matches) >= ORB_MIN_MATCHES:
                x_curr = np.float64([kp_curr[m.queryIdx].pt for m in matches])
                x_prev = np.float64([kp_prev[m.trainIdx].pt for m in matches])
                try:
                    E, mask = cv2.findEssentialMat(x_curr, x_prev, K, method=cv2.RANSAC, prob=0.999,
                                                   threshold=ORB_RANSAC_THRESHOLD_PX)
                except cv2.error:  # a degenerate sample (a camera almost at rest): the pair fails, as it would live
                    E = None
                if E is not None and E.shape == (3, 3):
                    count, R, t, mask, _ = cv2.recoverPose(E, x_curr, x_prev, K,
                                                           distanceThresh=ORB_CHEIRALITY_DISTANCE, mask=mask)
                    # recoverPose: X_prev = R X_curr + t (T_prev_curr up to the length of t).
                    length = _depth_scale(x_curr, x_prev, mask.ravel() > 0, R, t[:, 0], K, depths[index])
                    if count >= ORB_MIN_MATCHES and length is not None:
                        T[:3, :3], T[:3, 3] = R, t[:, 0] / np.linalg.norm(t) * length
                        ok = True
        poses.append(T)
        valid.append(ok)
    return chain_relative_poses(np.stack(poses), np.asarray(valid))


def _depth_scale(x_curr: np.ndarray, x_prev: np.ndarray, inliers: np.ndarray, R: np.ndarray, t: np.ndarray,
                 K: np.ndarray, depth_curr: np.ndarray) -> float | None:
    """Translation length: median of predicted / triangulated depth (unit baseline) over the inliers, in the
    current camera."""
    if inliers.sum() < MIN_SCALE_POINTS:
        return None
    unit = t / max(np.linalg.norm(t), 1e-12)
    P_curr = K @ np.hstack([np.eye(3), np.zeros((3, 1))])
    P_prev = K @ np.hstack([R, unit[:, None]])  # current-camera points into the previous camera
    homogeneous = cv2.triangulatePoints(P_curr, P_prev, x_curr[inliers].T, x_prev[inliers].T)
    z_triangulated = homogeneous[2] / homogeneous[3]
    height, width = depth_curr.shape
    columns = np.clip(np.round(x_curr[inliers, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.round(x_curr[inliers, 1]).astype(int), 0, height - 1)
    z_predicted = depth_curr[rows, columns]
    usable = np.isfinite(z_predicted) & (z_predicted > 0) & (z_triangulated > 0)
    if usable.sum() < MIN_SCALE_POINTS:
        return None
    return float(np.median(z_predicted[usable] / z_triangulated[usable]))


# The shipped model each sequence runs with unless --model names one (SHIPPED_MODELS names).
SUITE_MODEL = {"handheld": "indoor", "indoor-slow": "indoor", "driving": "driving", "demo": "driving"}


def evaluate(name: str, max_frames: int, backend_name: str, threads: int, model_name: str | None = None,
             precision: str = "auto", configurations: dict | None = None, seed: int | None = None,
             keypoint_checkpoint: str = "") -> dict:
    configurations = CONFIGURATIONS if configurations is None else configurations
    sequence = load_sequence(name, max_frames, seed)
    config = PipelineConfig(keypoint_checkpoint=keypoint_checkpoint)
    model_name = model_name or SUITE_MODEL[name]
    checkpoint = str(model_path(model_name))
    model = load_inference_model(checkpoint, keypoint_checkpoint or None)
    inner = create_backend(backend_name, model, tuple(model.input_size), "cpu", threads, precision,
                           config.onnx_cache)
    backend = ReplayBackend(inner)
    row = {"sequence": sequence.name, "model": model_name, "keypoint_checkpoint": keypoint_checkpoint,
           "frames": len(sequence.frames),
           "networks": f"{backend_name} ({getattr(inner, 'describe', lambda: precision)()})",
           "path_m": float(np.sum(np.linalg.norm(np.diff(sequence.T_world_cam[:, :3, 3], axis=0), axis=1)))}
    depths = None
    for label, overrides in configurations.items():
        T_est, depths_run, counts = run_pipeline(
            sequence, backend, {**overrides, "num_threads": threads, "keypoint_checkpoint": keypoint_checkpoint},
            checkpoint)
        depths = depths if depths is not None else depths_run
        row[label] = {**trajectory_metrics(T_est, sequence.T_world_cam), **counts}
    T_orb, failed = orb_chain(sequence, depths)
    row["orb"] = {**trajectory_metrics(T_orb, sequence.T_world_cam), "failed_pairs": failed}
    row["ratio"] = row[DEFAULT]["ate_rmse"] / max(row["orb"]["ate_rmse"], 1e-12)
    row["goal_met"] = bool(row["ratio"] <= GOAL_RATIO)
    return row


def table(rows: list[dict]) -> str:
    configurations = [m for m in CONFIGURATIONS if m in rows[0]]
    methods = ("orb", *configurations)
    header = ["sequence", "model", "frames", "path m"] + [f"ATE {m}" for m in methods] + \
             [f"RPE t {m}" for m in methods] + [f"{DEFAULT}/orb", f"<= {GOAL_RATIO}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["sequence"], Path(row["model"]).stem, str(row["frames"]), f"{row['path_m']:.2f}"]
        cells += [f"{row[m]['ate_rmse']:.4f}" for m in methods]
        cells += [f"{row[m]['rpe_trans_rmse']:.4f}" for m in methods]
        cells += [f"{row['ratio']:.2f}", "yes" if row["goal_met"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    extra = ["", "networks: " + "; ".join(sorted({row["networks"] for row in rows})),
             "", "keyframes / lost frames / median pose-stage ms per configuration:"]
    for row in rows:
        extra.append(f"  {row['sequence']}: " + "; ".join(
            f"{m} {row[m]['keyframes']} kf, {row[m]['lost_frames']} lost, {row[m]['pose_ms_median']:.1f} ms"
            for m in configurations) + f"; orb failed pairs {row['orb']['failed_pairs']}")
    return "\n".join(lines + extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=["handheld", "indoor-slow", "driving", "demo"],
                        choices=[*SUITES, "demo"])
    parser.add_argument("--max-frames", type=int, default=0, help="first N frames of each sequence (0 = all)")
    parser.add_argument("--backend", default=PipelineConfig().backend, choices=("torch", "onnxruntime", "openvino"))
    parser.add_argument("--precision", default="auto", help="network precision (default: the backend's auto)")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGURATIONS), default=list(CONFIGURATIONS),
                        help="configurations to run (f2f always runs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", help="driving, indoor or a packed model file for every sequence (default: the "
                        "shipped one that fits each camera)")
    parser.add_argument("--all-test-seeds", action="store_true",
                        help="every test sequence of each suite, not only the first")
    parser.add_argument("--keypoint-checkpoint", default="", metavar="FILE",
                        help="a KeypointNet (keypoint checkpoint, e.g. experiments/models/keypoint_net_light.pt) to "
                        "use instead of the model's (the Pipeline's keypoint_checkpoint)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.max_frames < 0 or args.max_frames == 1:
        parser.error(f"--max-frames must be 0 (all) or at least 2, got {args.max_frames}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = []
    for name in args.suites:
        start = time.perf_counter()
        chosen = {label: CONFIGURATIONS[label] for label in CONFIGURATIONS
                  if label == DEFAULT or label in args.configs}
        seeds = SUITES[name].test_seeds if args.all_test_seeds and name in SUITES else (None,)
        for seed in seeds:
            rows.append(evaluate(name, args.max_frames, args.backend, args.threads, args.model, args.precision,
                                 chosen, seed, args.keypoint_checkpoint))
            print(f"{rows[-1]['sequence']}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
            start = time.perf_counter()
    print("KeypointNet: " + (args.keypoint_checkpoint or "the model file's"))
    print(table(rows))
    if args.json:
        with atomic_output(args.json) as temporary:
            temporary.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(row["goal_met"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
