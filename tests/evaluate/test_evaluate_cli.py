"""The evaluation CLI: pose numbers against evo's, depth on a checkpoint and its baselines, curves, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from priordepth_core.evaluate.__main__ import main
from priordepth_core.evaluate.pose_cli import associate
from priordepth_core.inference.model_file import (
    InferenceModel,
    load_depth_net,
    save_inference_model,
    untrained_inference_model,
)
from priordepth_core.train.checkpoint import load_checkpoint

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


def _pack_depth_net(checkpoint: Path, out: Path, provenance: dict) -> Path:
    """A packed (fp16) model holding the DepthNet of ``checkpoint`` and an untrained KeypointNet."""
    depth_net, depth_config, input_size, _ = load_depth_net(checkpoint)
    keypoints = untrained_inference_model(input_size, descriptor_dim=16)
    save_inference_model(InferenceModel(depth_net, keypoints.keypoint_net, input_size, depth_config,
                                        keypoints.keypoint_config, provenance), out)
    return out


def test_depth_cli_accepts_a_packed_model(plane_sequence_checkpoint, tmp_path):
    """A packed model scores like the trainer checkpoint it came from (fp16 weights); its data config comes from
    the training config in its provenance, or from --set when it has none."""
    training_config = load_checkpoint(plane_sequence_checkpoint)["config"]
    packed = _pack_depth_net(plane_sequence_checkpoint, tmp_path / "packed.pt", {"training_config": training_config})
    bare = _pack_depth_net(plane_sequence_checkpoint, tmp_path / "bare.pt", {})
    data = training_config["data"]
    results = {}
    for name, checkpoint, extra in (("trainer", plane_sequence_checkpoint, []), ("packed", packed, []),
                                    ("bare", bare, ["--set", "data.kind=tum", "--set", f"data.path={data['path']}"])):
        out = tmp_path / f"{name}.json"
        assert main(["depth", "--checkpoint", str(checkpoint), "--split", "train", "--max-depth", "20", "--json",
                     str(out), *extra]) == 0
        results[name] = json.loads(out.read_text())["metrics"]
    for name in ("packed", "bare"):
        assert results[name]["num_images"] == results["trainer"]["num_images"] == 10
        assert results[name]["abs_rel"] == pytest.approx(results["trainer"]["abs_rel"], rel=1e-2, abs=1e-4)


class _NotPriorDepth:
    pass


def _bad_model_files(tmp_path: Path, plane_sequence_checkpoint: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the error must say)."""
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp_path / "truncated.pt"
    data = plane_sequence_checkpoint.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign.pt"
    torch.save({"thing": _NotPriorDepth()}, foreign)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    return {
        "random": (random_bytes, "is not a PriorDepth checkpoint or model: it is not a file written by torch.save"),
        "truncated": (truncated, "is truncated or damaged"),
        "empty": (empty, "is empty (0 bytes)"),
        "foreign": (foreign, "holds Python objects besides tensors and plain values"),
        "other": (other, "is not a PriorDepth checkpoint or model (it holds keys ['weights'])"),
    }


@pytest.mark.parametrize("command", ["depth", "trajectory"])
def test_cli_explains_unusable_checkpoints(plane_sequence_checkpoint, tmp_path, command):
    for name, (path, message) in _bad_model_files(tmp_path, plane_sequence_checkpoint).items():
        result = subprocess.run([sys.executable, "-m", "priordepth_core.evaluate", command, "--checkpoint", str(path)],
                                cwd=REPO_ROOT, capture_output=True, text=True)
        assert result.returncode == 2, (name, result.stderr[-2000:])
        assert message in result.stderr and "expected a packed inference model" in result.stderr, name
        assert "Traceback" not in result.stderr and "weights_only=False" not in result.stderr, name
        assert len(result.stderr.strip().splitlines()) == 1, name


def test_trajectory_cli_says_it_needs_a_trainer_checkpoint(plane_sequence_checkpoint, tmp_path, capsys):
    packed = _pack_depth_net(plane_sequence_checkpoint, tmp_path / "packed.pt", {})
    assert main(["trajectory", "--checkpoint", str(packed)]) == 2
    assert "is a packed inference model; evaluate trajectory needs a trainer checkpoint" in capsys.readouterr().err
