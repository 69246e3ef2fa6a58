"""Score the PriorDepth experiment (config/train/runs/*.yaml); write docs/results.json, plots and the docs table.

    python experiments/collect_priordepth.py [--runs-root runs/experiment] [--docs docs] [--min-steps 999]

For each suite and run with a ``last.pt``: depth on the held-out test split (MonoDepth2 protocol, median-scaled)
with ``evaluate depth``, frame-to-frame odometry (Sim(3)-aligned ATE, RPE) with ``evaluate trajectory``, and for the
handheld (indoor) runs abs_rel on the five real ICL-NUIM living-room frames of ../shared/data when present. Adds the
constant-depth floor and the classical ORB + 5-point chain (ground-truth scale). A run that has not reached
``--min-steps`` is scored at the step it reached and marked ``partial``.

Writes ``docs/results.json`` as ``{run: {suite: {"abs_rel", "a1", "ate_m", "rpe_trans_m", "rpe_rot_deg", "steps",
...}}}``, ``docs/results/experiment/*.json`` (each evaluation's output), ``docs/priordepth_learning_curves.png``
(test abs_rel per epoch), ``docs/priordepth_trajectories_<suite>.png`` and prints the table of docs/experiments.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from priordepth_core.data.trajectory_io import read_trajectory
from priordepth_core.evaluate.__main__ import main as evaluate_main
from priordepth_core.evaluate.depth_cli import load_depth_model
from priordepth_core.evaluate.depth_metrics import aggregate_depth_metrics, compute_depth_metrics
from priordepth_core.evaluate.pose_metrics import align_trajectory

REPO = Path(__file__).resolve().parents[1]
SHARED_ICL = REPO.parent / "shared" / "data" / "icl_nuim_livingroom"
SUITES = {"driving": {"max_depth": 80.0, "orb_config": "config/train/runs/driving_posenet.yaml"},
          "handheld": {"max_depth": 20.0, "orb_config": "config/train/runs/handheld_posenet.yaml"}}
# run name (its folder runs/experiment/<suite>/<run>) -> label in the docs. The configs are
# config/train/runs/<suite>_<run>.yaml, except priordepth_v3 (the default, <suite>_priordepth.yaml), priordepth_v2
# (<suite>_priordepth.yaml with loss.depth_gauge_weight 0, stopped early) and priordepth (v1,
# <suite>_priordepth_v1.yaml).
RUNS = {"posenet": "PoseNet (MonoDepth2)", "priordepth_v3": "PriorDepth (default: differentiable length + depth gauge)",
        "priordepth_v2": "PriorDepth v2 (differentiable length, no gauge)",
        "priordepth": "PriorDepth v1 (detached length)",
        "priordepth_noprior": "PriorDepth without the sparse prior",
        "priordepth_strongprior": "PriorDepth, sparse prior weight 1.0 (not 0.1)",
        "priordepth_orb": "PriorDepth with ORB keypoints",
        "pnp": "PnP on the cached matches (+ prior)",
        "priordepth_posenet_t": "essential rotation + PoseNet translation",
        "priordepth_index": "PriorDepth, context frames by index (±3)"}
CONSTANT, ORB = "constant", "orb"
LABELS = {**RUNS, CONSTANT: "constant depth (median-scaled floor)", ORB: "ORB + 5-point chain (GT scale)"}
COLUMNS = ("abs_rel", "a1", "ate_m", "rpe_trans_m", "rpe_rot_deg", "icl_nuim_abs_rel", "steps")


def _evaluate(argv: list[str]) -> None:
    if evaluate_main(argv) != 0:
        raise SystemExit(f"evaluation failed: {' '.join(argv)}")


def _checkpoint_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _trajectory_metrics(path: Path) -> dict[str, float]:
    mean = json.loads(path.read_text())["mean"]
    return {"ate_m": mean["ate_rmse"], "rpe_trans_m": mean["rpe_trans_rmse"], "rpe_rot_deg": mean["rpe_rot_rmse_deg"],
            "failed_pair_fraction": mean.get("failed_pair_fraction", 0.0)}


def icl_nuim_abs_rel(checkpoint: Path | None) -> float | None:
    """Median-scaled abs_rel of a checkpoint's DepthNet (None: a constant depth) on the 5 real ICL-NUIM frames."""
    if not SHARED_ICL.is_dir():
        return None
    depth_net, size = None, (128, 160)
    if checkpoint is not None:
        config, depth_net = load_depth_model(str(checkpoint), [], "cpu")
        size = (config.data.height, config.data.width)
    per_image = []
    for color in sorted((SHARED_ICL / "color").glob("*.jpg")):
        rgb = cv2.cvtColor(cv2.imread(str(color)), cv2.COLOR_BGR2RGB)
        gt = cv2.imread(str(SHARED_ICL / "depth" / f"{color.stem}.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000
        if depth_net is None:
            pred = np.ones_like(gt)
        else:
            small = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            with torch.no_grad():
                pred = depth_net(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255)["depth"][0][0, 0]
            pred = pred.numpy()  # resized to the ground truth's 640x480 by compute_depth_metrics
        per_image.append(compute_depth_metrics(gt, pred, min_depth=0.1, max_depth=10.0, crop=None))
    return aggregate_depth_metrics(per_image)["abs_rel"]


def score_run(suite: str, run: str, run_dir: Path, out_dir: Path) -> dict[str, float]:
    checkpoint = run_dir / "last.pt"
    step = int(_checkpoint_state(checkpoint)["step"])
    depth_json = out_dir / f"{suite}_{run}_depth_step{step}.json"
    traj_json = out_dir / f"{suite}_{run}_trajectory_step{step}.json"
    if not depth_json.is_file():
        _evaluate(["depth", "--checkpoint", str(checkpoint), "--max-depth", str(SUITES[suite]["max_depth"]),
                   "--json", str(depth_json)])
    if not traj_json.is_file():
        _evaluate(["trajectory", "--checkpoint", str(checkpoint), "--out", str(run_dir / "trajectory"),
                   "--json", str(traj_json)])
    depth = json.loads(depth_json.read_text())["metrics"]
    scores = {"abs_rel": depth["abs_rel"], "a1": depth["a1"], **_trajectory_metrics(traj_json), "steps": step}
    if suite == "handheld":
        icl = icl_nuim_abs_rel(checkpoint)
        if icl is not None:
            scores["icl_nuim_abs_rel"] = icl
    return scores


def score_constant(suite: str, checkpoint: Path, out_dir: Path) -> dict[str, float]:
    depth_json = out_dir / f"{suite}_constant_depth.json"
    if not depth_json.is_file():
        _evaluate(["depth", "--checkpoint", str(checkpoint), "--baseline", "constant", "--max-depth",
                   str(SUITES[suite]["max_depth"]), "--json", str(depth_json)])
    depth = json.loads(depth_json.read_text())["metrics"]
    scores = {"abs_rel": depth["abs_rel"], "a1": depth["a1"]}
    if suite == "handheld":
        icl = icl_nuim_abs_rel(None)
        if icl is not None:
            scores["icl_nuim_abs_rel"] = icl
    return scores


def score_orb(suite: str, runs_root: Path, out_dir: Path) -> dict[str, float]:
    traj_json = out_dir / f"{suite}_orb_trajectory.json"
    if not traj_json.is_file():
        _evaluate(["trajectory", "--orb", "--config", SUITES[suite]["orb_config"], "--out",
                   str(runs_root / suite / ORB), "--json", str(traj_json)])
    return _trajectory_metrics(traj_json)


def plot_learning_curves(runs_root: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SUITES), figsize=(6 * len(SUITES), 4))
    for ax, suite in zip(axes, SUITES):
        for run in RUNS:
            checkpoint = runs_root / suite / run / "last.pt"
            if not checkpoint.is_file():
                continue
            history = [h for h in json.loads(_checkpoint_state(checkpoint)["history"]) if "abs_rel" in h]
            if history:
                ax.plot([h["step"] for h in history], [h["abs_rel"] for h in history], marker="o", ms=3,
                        label=RUNS[run])
        ax.set_title(f"{suite}: test abs_rel (64 samples) per epoch")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("abs_rel (median-scaled)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_trajectories(suite: str, runs_root: Path, runs: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    references = sorted((runs_root / suite / ORB).glob("*_reference.txt"))
    if not references:
        return
    sequence = references[0].name.removesuffix("_reference.txt")
    _, T_ref = read_trajectory(references[0])
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(T_ref[:, 0, 3], T_ref[:, 2, 3], "k-", lw=2.5, label="ground truth")
    for run in [*runs, ORB]:
        folder = runs_root / suite / ORB if run == ORB else runs_root / suite / run / "trajectory"
        estimate = folder / f"{sequence}_estimate.txt"
        if estimate.is_file():
            _, T_est = read_trajectory(estimate)
            aligned, _ = align_trajectory(T_est, T_ref, "sim3")
            ax.plot(aligned[:, 0, 3], aligned[:, 2, 3], lw=1.2, label=LABELS[run])
    ax.set_xlabel("x (m)")
    ax.set_ylabel("z (m)")
    extent = np.ptp(T_ref[:, [0, 2], 3], axis=0)
    to_scale = extent.max() < 10 * max(extent.min(), 1e-6)
    if to_scale:
        ax.set_aspect("equal", adjustable="datalim")
    # A nearly straight drive drawn to scale is one line; stretched across it, the drift shows.
    ax.set_title(f"{suite} {sequence}: Sim(3)-aligned, top view" + ("" if to_scale else " (not to scale)"),
                 fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-root", default="runs/experiment")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--min-steps", type=int, default=999, help="the budget; runs short of it are 'partial'")
    args = parser.parse_args(argv)
    runs_root, docs = Path(args.runs_root), Path(args.docs)
    out_dir = docs / "results" / "experiment"
    out_dir.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict[str, dict[str, float]]] = {}
    for suite in SUITES:
        scored = []
        for run in RUNS:
            run_dir = runs_root / suite / run
            if not (run_dir / "last.pt").is_file():
                continue
            scores = score_run(suite, run, run_dir, out_dir)
            scores["partial"] = scores["steps"] < args.min_steps
            results.setdefault(run, {})[suite] = scores
            scored.append(run)
        if scored:
            results.setdefault(CONSTANT, {})[suite] = score_constant(suite, runs_root / suite / scored[0] / "last.pt",
                                                                     out_dir)
        results.setdefault(ORB, {})[suite] = score_orb(suite, runs_root, out_dir)
        plot_trajectories(suite, runs_root, [r for r in ("posenet", "priordepth_v3", "priordepth") if r in scored],
                          docs / f"priordepth_trajectories_{suite}.png")
    plot_learning_curves(runs_root, docs / "priordepth_learning_curves.png")
    (docs / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")

    print("| suite | run | abs_rel | δ<1.25 | ATE (m) | RPE t (m) | RPE r (°) | ICL-NUIM abs_rel | steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for suite in SUITES:
        for run in (CONSTANT, *RUNS, ORB):
            metrics = results.get(run, {}).get(suite)
            if metrics is None:
                continue
            cells = []
            for key in COLUMNS:
                value = metrics.get(key)
                cells.append("–" if value is None else str(value) + (" (partial)" if metrics.get("partial") else "")
                             if key == "steps" else f"{value:.3f}")
            print(f"| {suite} | {LABELS[run]} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
