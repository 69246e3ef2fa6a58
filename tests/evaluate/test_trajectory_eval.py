"""Trajectory evaluation: chaining with constant-velocity fallback, GT poses give zero error, CLI on a tiny sequence."""

import json

import numpy as np
import pytest
import torch

from priordepth_core.data import FrameSamples, TumRgbdReader
from priordepth_core.evaluate.__main__ import main as evaluate_main
from priordepth_core.evaluate.trajectory_eval import (
    chain_relative_poses,
    evaluate_trajectories,
    orb_relative_poses,
)
from priordepth_core.geometry.se3 import make_transform, so3_exp


def _motion(tx, yaw):
    R = so3_exp(torch.tensor([[0.0, yaw, 0.0]], dtype=torch.float64))
    return make_transform(R, torch.tensor([[tx, 0.0, 0.1]], dtype=torch.float64))[0].numpy()


def test_chain_repeats_last_valid_motion_for_failed_pairs():
    motions = np.stack([_motion(0.1, 0.01), np.full((4, 4), np.nan), _motion(0.2, -0.02)])
    T_world, failed = chain_relative_poses(motions, np.array([True, False, True]))
    assert failed == 1 and T_world.shape == (4, 4, 4)
    np.testing.assert_allclose(T_world[2], motions[0] @ motions[0], atol=1e-12)
    np.testing.assert_allclose(T_world[3], motions[0] @ motions[0] @ motions[2], atol=1e-12)


@pytest.fixture(scope="module")
def room_pairs(tmp_path_factory):
    """A short rendered handheld sequence in the synthetic room (3-D motion, exact poses)."""
    from priordepth_core.data.synthetic.__main__ import main as synthetic_main

    root = tmp_path_factory.mktemp("traj") / "seq"
    assert synthetic_main(["--scene", "room", "--motion", "handheld", "--frames", "10", "--size", "160x128",
                           "--seed", "3", "--out", str(root), "--no-progress"]) == 0
    return root, FrameSamples(TumRgbdReader(root), (128, 160), (-1,))


def test_ground_truth_relative_poses_give_zero_error(room_pairs):
    _, dataset = room_pairs

    def gt_poses(samples):
        return np.stack([s["T_context_target"][0].double().numpy() for s in samples]), np.ones(len(samples), bool)

    (result,) = evaluate_trajectories(dataset, gt_poses)
    assert len(result.T_world_est) == len(dataset) + 1 == len(result.stamps)
    assert result.metrics["ate_rmse"] < 1e-5 and result.metrics["rpe_trans_rmse"] < 1e-5
    assert result.failed_pairs == 0


def test_a_stalled_estimate_is_not_aligned_away(room_pairs):
    _, dataset = room_pairs

    def stalled_first_half(samples):
        T = np.stack([s["T_context_target"][0].double().numpy() for s in samples])
        T[: len(T) // 2, :3, 3] = 0.0  # the estimate misses the first half of the motion
        return T, np.ones(len(samples), bool)

    (result,) = evaluate_trajectories(dataset, stalled_first_half)
    positions = result.T_world_ref[:, :3, 3]
    spread = np.linalg.norm(positions - positions.mean(axis=0), axis=1).max()
    assert result.metrics["ate_rmse"] > 0.1 * spread


def test_orb_baseline_tracks_the_plane_sequence(room_pairs):
    _, dataset = room_pairs
    T, valid = orb_relative_poses([dataset[i] for i in range(len(dataset))])
    assert T.shape == (len(dataset), 4, 4) and np.isfinite(T).all()
    assert valid.dtype == bool


def test_cli_writes_trajectories_and_json(plane_sequence_checkpoint, room_pairs, tmp_path):
    out = tmp_path / "traj"
    root, _ = room_pairs
    code = evaluate_main(["trajectory", "--checkpoint", str(plane_sequence_checkpoint), "--split", "train",
                          "--set", f"data.path={root}", "--set", "data.height=128", "--set", "data.width=160",
                          "--out", str(out), "--json", str(tmp_path / "m.json")])
    assert code == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert np.isfinite(metrics["mean"]["ate_rmse"]) and metrics["method"] == "posenet"
    assert (out / "seq_estimate.txt").is_file() and (out / "seq_reference.txt").is_file()


def test_cli_orb_needs_ground_truth_poses(tmp_path, room_pairs):
    root, _ = room_pairs
    config = tmp_path / "c.yaml"
    no_gt = tmp_path / "nogt"
    import shutil

    shutil.copytree(root, no_gt)
    (no_gt / "groundtruth.txt").unlink()
    config.write_text(f"data:\n  kind: tum\n  path: {no_gt}\n  height: 64\n  width: 96\n")
    assert evaluate_main(["trajectory", "--orb", "--config", str(config), "--split", "train"]) == 2


def test_cli_reads_a_checkpoint_trained_with_frozen_keypoints(plane_sequence_checkpoint, room_pairs, tmp_path):
    """A run trained with model.keypoint_frozen keeps its KeypointNet in the checkpoint; evaluation reads no init file
    and must not reject the run's config for lacking one."""
    root, _ = room_pairs
    code = evaluate_main(["trajectory", "--checkpoint", str(plane_sequence_checkpoint), "--split", "train",
                          "--set", f"data.path={root}", "--set", "data.height=128", "--set", "data.width=160",
                          "--set", "model.keypoint_frozen=true", "--set", "model.keypoint_init=runs/gone.pt",
                          "--out", str(tmp_path / "traj"), "--json", str(tmp_path / "m.json")])
    assert code == 0
    assert np.isfinite(json.loads((tmp_path / "m.json").read_text())["mean"]["ate_rmse"])
