"""Score every run of experiments/pose_sources.sh and the ORB baseline; write docs/results/pose_sources.json, plots.

    python experiments/collect_pose_sources.py [--runs-root runs/pose_sources] [--steps N]

For each suite and run: depth (MonoDepth2 protocol, median-scaled, test split) with ``evaluate depth`` and
frame-to-frame odometry (Sim(3)-aligned ATE, RPE, failed-pair fraction) with ``evaluate trajectory``, on the test
sequences that no run trained on. A run is only scored once its ``last.pt`` has reached its suite's shared step
budget (``SUITES``; ``--steps`` overrides it). Writes ``docs/results/pose_sources.json``
(``{run: {suite: {metric: value}}}``),
``docs/results/pose_sources/*.json``, ``docs/trajectories_<suite>.png`` (ground truth vs each run, first test
sequence, top view) and prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from priordepth_core.data.trajectory_io import read_trajectory
from priordepth_core.evaluate.__main__ import main as evaluate_main
from priordepth_core.evaluate.pose_metrics import align_trajectory

REPO = Path(__file__).resolve().parents[1]
HANDHELD = "config/train/synthetic_handheld.yaml"
# suite key of experiments/pose_sources.sh -> its training config, the label in pose_sources.json, the depth cap of
# the evaluation, the step budget every run of it shares, and the suite whose test sequences score the ORB baseline.
SUITES = {
    "driving": {"config": "config/train/synthetic_driving.yaml", "label": "driving", "max_depth": 80.0,
                "steps": 200, "orb": "driving"},
    "driving_long": {"config": "config/train/synthetic_driving.yaml", "label": "driving-600", "max_depth": 80.0,
                     "steps": 600, "orb": "driving"},
    "handheld": {"config": HANDHELD, "label": "handheld", "max_depth": 20.0, "steps": 200, "orb": "handheld"},
    "handheld_wide": {"config": HANDHELD, "label": "handheld-ctx3", "max_depth": 20.0, "steps": 400,
                      "orb": "handheld"},
    "indoor_slow": {"config": "config/train/synthetic_indoor_slow.yaml", "label": "indoor-slow", "max_depth": 20.0,
                    "steps": 200, "orb": "indoor_slow"},
}
RUNS = {"posenet": "PoseNet", "essential": "PriorDepth-essential", "pnp": "PriorDepth-PnP",
        "pnp_prior": "PriorDepth-PnP+prior", "pnp_detached": "PriorDepth-PnP (detached depth)",
        "pnp_frozen": "PriorDepth-PnP (frozen keypoints, detached depth)"}
CLASSICAL = "classical-ORB (GT scale)"
CONSTANT = "constant depth (median-scaled)"
METRICS = ("abs_rel", "a1", "ate_rmse", "rpe_trans_rmse", "rpe_rot_rmse_deg", "failed_pair_fraction")


def _evaluate(argv: list[str]) -> None:
    if evaluate_main(argv) != 0:
        raise SystemExit(f"evaluation failed: {' '.join(argv)}")


def _step_of(checkpoint: Path) -> int:
    import torch

    return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["step"])


def score_run(suite: str, run: str, run_dir: Path, out_dir: Path) -> dict[str, float]:
    checkpoint = run_dir / "last.pt"
    depth_json, traj_json = out_dir / f"{suite}_{run}_depth.json", out_dir / f"{suite}_{run}_trajectory.json"
    if not depth_json.is_file():
        _evaluate(["depth", "--checkpoint", str(checkpoint), "--max-depth", str(SUITES[suite]["max_depth"]),
                   "--json", str(depth_json)])
    if not traj_json.is_file():
        _evaluate(["trajectory", "--checkpoint", str(checkpoint), "--out", str(run_dir / "trajectory"),
                   "--json", str(traj_json)])
    depth = json.loads(depth_json.read_text())["metrics"]
    trajectory = json.loads(traj_json.read_text())["mean"]
    return {"abs_rel": depth["abs_rel"], "a1": depth["a1"], **{k: trajectory[k] for k in METRICS[2:]}}


def score_constant_depth(suite: str, checkpoint: Path, out_dir: Path) -> dict[str, float]:
    """The floor any depth network must beat: one constant depth per image, median-scaled to the ground truth."""
    depth_json = out_dir / f"{suite}_constant_depth.json"
    if not depth_json.is_file():
        _evaluate(["depth", "--checkpoint", str(checkpoint), "--baseline", "constant", "--max-depth",
                   str(SUITES[suite]["max_depth"]), "--json", str(depth_json)])
    depth = json.loads(depth_json.read_text())["metrics"]
    return {"abs_rel": depth["abs_rel"], "a1": depth["a1"]}


def score_classical(suite: str, runs_root: Path, out_dir: Path) -> dict[str, float]:
    orb_suite = SUITES[suite]["orb"]
    traj_json = out_dir / f"{orb_suite}_orb_trajectory.json"
    if not traj_json.is_file():
        _evaluate(["trajectory", "--orb", "--config", SUITES[orb_suite]["config"], "--out",
                   str(runs_root / orb_suite / "orb"),
                   "--json", str(traj_json)])
    trajectory = json.loads(traj_json.read_text())["mean"]
    return {k: trajectory[k] for k in METRICS[2:]}


def plot_suite(suite: str, runs_root: Path, runs: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    orb_dir = runs_root / SUITES[suite]["orb"] / "orb"
    references = sorted(orb_dir.glob("*_reference.txt"))
    if not references:
        return
    sequence = references[0].name.removesuffix("_reference.txt")
    _, T_ref = read_trajectory(references[0])
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(T_ref[:, 0, 3], T_ref[:, 2, 3], "k-", lw=2.5, label="ground truth")
    for run in [*runs, "orb"]:
        folder = orb_dir if run == "orb" else runs_root / suite / run / "trajectory"
        estimate = folder / f"{sequence}_estimate.txt"
        if not estimate.is_file():
            continue
        _, T_est = read_trajectory(estimate)
        aligned, _ = align_trajectory(T_est, T_ref, "sim3")
        ax.plot(aligned[:, 0, 3], aligned[:, 2, 3], lw=1.2, label=RUNS.get(run, CLASSICAL))
    ax.set_xlabel("x (m)")
    ax.set_ylabel("z (m)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"{SUITES[suite]['label']} test sequence {sequence} (Sim(3)-aligned, top view)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=0,
                        help="the step budget a run must have reached (default: the suite's budget in SUITES)")
    parser.add_argument("--runs-root", default="runs/pose_sources")
    parser.add_argument("--docs", default="docs")
    args = parser.parse_args(argv)
    runs_root, docs = Path(args.runs_root), Path(args.docs)
    out_dir = docs / "results" / "pose_sources"
    out_dir.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict[str, dict[str, float]]] = {}
    for suite, spec in SUITES.items():
        label_of_suite, steps = spec["label"], args.steps or spec["steps"]
        scored = []
        for run, label in RUNS.items():
            checkpoint = runs_root / suite / run / "last.pt"
            if not checkpoint.is_file() or _step_of(checkpoint) < steps:
                print(f"skip {suite}/{run}: not trained to {steps} steps", file=sys.stderr)
                continue
            results.setdefault(label, {})[label_of_suite] = score_run(suite, run, runs_root / suite / run,
                                                                           out_dir)
            scored.append(run)
        if scored:
            results.setdefault(CONSTANT, {})[label_of_suite] = score_constant_depth(
                suite, runs_root / suite / scored[0] / "last.pt", out_dir)
        results.setdefault(CLASSICAL, {})[label_of_suite] = score_classical(suite, runs_root, out_dir)
        plot_suite(suite, runs_root, scored, docs / f"trajectories_{suite}.png")

    (docs / "results" / "pose_sources.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print("| suite | run | abs_rel | δ<1.25 | ATE (m) | RPE t (m) | RPE r (°) | failed |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in SUITES.values():
        for label in (CONSTANT, *RUNS.values(), CLASSICAL):
            metrics = results.get(label, {}).get(spec["label"])
            if metrics is None:
                continue
            cells = [f"{metrics[k]:.3f}" if k in metrics and np.isfinite(metrics[k]) else "–" for k in METRICS]
            print(f"| {spec['label']} | {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
