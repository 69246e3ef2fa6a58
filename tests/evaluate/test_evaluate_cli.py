"""The evaluation CLI: pose numbers against evo's, depth on a checkpoint and its baselines, curves, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from priordepth_core.evaluate.__main__ import main
from priordepth_core.evaluate.pose_cli import associate

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAJECTORIES = REPO_ROOT.parent / "shared" / "data" / "trajectories"


def test_associate_is_greedy_and_one_to_one():
    est, ref = associate(np.array([0.0, 0.1, 0.2, 0.9]), np.array([0.005, 0.095, 0.31, 0.2]), 0.02)
    assert est.tolist() == [0, 1, 2] and ref.tolist() == [0, 1, 3]
    with pytest.raises(ValueError, match="no timestamps"):
        associate(np.array([0.0]), np.array([5.0]), 0.01)


def test_pose_cli_matches_evo(tmp_path, monkeypatch):
    if not TRAJECTORIES.is_dir():
        pytest.skip(f"{TRAJECTORIES} is absent (only present in the project's workspace)")
    monkeypatch.setenv("HOME", str(tmp_path))
    from evo.core import metrics, sync
    from evo.tools import file_interface

    estimate, reference = TRAJECTORIES / "fr2_desk_ORB.txt", TRAJECTORIES / "fr2_desk_groundtruth.txt"
    out = tmp_path / "pose.json"
    assert main(["pose", "--estimate", str(estimate), "--reference", str(reference), "--json", str(out)]) == 0
    ours = json.loads(out.read_text())

    traj_ref = file_interface.read_tum_trajectory_file(str(reference))
    traj_est = file_interface.read_tum_trajectory_file(str(estimate))
    traj_ref, traj_est = sync.associate_trajectories(traj_ref, traj_est, max_diff=0.01)
    traj_est.align(traj_ref, correct_scale=True)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((traj_ref, traj_est))
    assert ours["num_poses"] == traj_ref.num_poses
    assert ours["ate_rmse"] == pytest.approx(ape.get_statistic(metrics.StatisticsType.rmse), rel=1e-6)


def test_depth_cli_model_and_baselines(plane_sequence_checkpoint, tmp_path):
    results = {}
    for baseline in (None, "constant", "untrained"):
        out = tmp_path / f"{baseline}.json"
        args = ["depth", "--checkpoint", str(plane_sequence_checkpoint), "--split", "train", "--max-depth", "20",
                "--json", str(out)]
        assert main(args + (["--baseline", baseline] if baseline else [])) == 0
        results[baseline] = json.loads(out.read_text())["metrics"]
    # A fronto-parallel plane has constant depth: the constant baseline is exact after median scaling.
    assert results["constant"]["abs_rel"] < 1e-6 and results["constant"]["a1"] == 1.0
    for metrics in results.values():
        assert 0 <= metrics["abs_rel"] < 1 and metrics["num_images"] == 10


def test_depth_cli_rejects_missing_checkpoint(tmp_path, capsys):
    assert main(["depth", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_curves_cli(plane_sequence_checkpoint, tmp_path):
    out = tmp_path / "curve.png"
    assert main(["curves", "--run", str(plane_sequence_checkpoint.parent), "--out", str(out),
                 "--baseline", "constant=0.3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "priordepth_core.evaluate", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0 and "depth" in result.stdout and "pose" in result.stdout
