"""``evaluate pose`` pairs estimate and reference poses by timestamp or by index, says which, and refuses the rest."""

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from priordepth_core.data.trajectory_io import write_kitti_poses, write_tum_trajectory
from priordepth_core.evaluate.__main__ import main

TUM_RATE_HZ = 30.0


def curved_path(n: int) -> np.ndarray:
    """(n, 4, 4) camera-to-world poses along a planar arc with a slow yaw."""
    angle = np.linspace(0.0, 1.5, n)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = Rotation.from_euler("y", angle[:, None]).as_matrix()
    T[:, :3, 3] = np.stack([np.sin(angle) * 5.0, 0.1 * angle, (1.0 - np.cos(angle)) * 5.0], axis=1)
    return T


def run_pose(capsys, estimate, reference, *extra):
    code = main(["pose", "--estimate", str(estimate), "--reference", str(reference), *map(str, extra)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_kitti_estimate_against_a_longer_tum_reference_is_refused(tmp_path, capsys):
    # KITTI files have no stamps; read as 10 Hz they would pair with every third pose of a 30 Hz reference.
    reference, estimate = tmp_path / "groundtruth.txt", tmp_path / "estimate_kitti.txt"
    write_tum_trajectory(reference, np.arange(90) / TUM_RATE_HZ, curved_path(90))
    write_kitti_poses(estimate, curved_path(30))
    code, out, err = run_pose(capsys, estimate, reference, "--json", tmp_path / "pose.json")
    assert code == 2
    assert f"{estimate} (30 poses, no timestamps)" in err and f"{reference} (90 poses)" in err
    assert "--estimate-times" in err and "Traceback" not in err
    assert not (tmp_path / "pose.json").exists()


def test_kitti_estimate_with_equal_count_is_paired_by_index(tmp_path, capsys):
    reference, estimate = tmp_path / "groundtruth.txt", tmp_path / "estimate_kitti.txt"
    T = curved_path(90)
    write_tum_trajectory(reference, 1305031102.0 + np.arange(90) / TUM_RATE_HZ, T)
    write_kitti_poses(estimate, T)
    code, out, _ = run_pose(capsys, estimate, reference, "--json", tmp_path / "pose.json")
    assert code == 0
    assert "association: by index (both have 90 poses)" in out
    result = json.loads((tmp_path / "pose.json").read_text())
    assert result["association"] == "by index (both have 90 poses)"
    assert result["num_poses"] == 90 and result["ate_rmse"] < 1e-6


def test_kitti_estimate_with_its_times_is_paired_by_timestamp(tmp_path, capsys):
    reference, estimate, times = tmp_path / "groundtruth.txt", tmp_path / "estimate_kitti.txt", tmp_path / "t.txt"
    T = curved_path(90)
    write_tum_trajectory(reference, np.arange(90) / TUM_RATE_HZ, T)
    write_kitti_poses(estimate, T[::3])
    times.write_text("".join(f"{i / 10.0 + 0.002:.6f}\n" for i in range(30)))
    code, out, _ = run_pose(capsys, estimate, reference, "--estimate-times", times, "--json", tmp_path / "p.json")
    assert code == 0
    assert "association: by timestamp (max diff 2.0 ms, 30 pairs)" in out
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["association"] == "by timestamp (max diff 2.0 ms, 30 pairs)" and result["ate_rmse"] < 1e-6


def test_tum_pair_reports_timestamp_association(tmp_path, capsys):
    reference, estimate = tmp_path / "groundtruth.txt", tmp_path / "estimate.txt"
    T = curved_path(100)
    write_tum_trajectory(reference, 50.0 + np.arange(100) / 100.0, T)
    write_tum_trajectory(estimate, 50.0 + np.arange(0, 100, 4) / 100.0 + 0.0035, T[::4])
    code, out, _ = run_pose(capsys, estimate, reference, "--json", tmp_path / "pose.json")
    assert code == 0 and "association: by timestamp (max diff 3.5 ms, 25 pairs)" in out
    assert json.loads((tmp_path / "pose.json").read_text())["num_poses"] == 25


def test_timestamp_association_matching_too_few_poses_is_refused(tmp_path, capsys):
    # Only the last 3 of 40 estimate stamps overlap the reference: metrics would describe a 3-pose fragment.
    reference, estimate = tmp_path / "groundtruth.txt", tmp_path / "estimate.txt"
    write_tum_trajectory(reference, 10.0 + np.arange(40) / TUM_RATE_HZ, curved_path(40))
    write_tum_trajectory(estimate, 10.0 + (np.arange(40) - 37) / TUM_RATE_HZ, curved_path(40))
    code, _, err = run_pose(capsys, estimate, reference)
    assert code == 2
    assert f"only 3 poses of {estimate} (40 poses) have a pose of {reference} (40 poses) within 0.01 s" in err
    assert "at least 20 are needed" in err
    code, _, err = run_pose(capsys, estimate, reference, "--min-matched-fraction", "0.05")
    assert code == 0


def test_kitti_pair_without_times_is_paired_by_index_or_refused(tmp_path, capsys):
    reference, estimate = tmp_path / "00.txt", tmp_path / "00_estimate.txt"
    write_kitti_poses(reference, curved_path(50))
    write_kitti_poses(estimate, curved_path(50))
    code, out, _ = run_pose(capsys, estimate, reference)
    assert code == 0 and "association: by index (both have 50 poses)" in out
    write_kitti_poses(estimate, curved_path(49))
    code, _, err = run_pose(capsys, estimate, reference)
    assert code == 2 and "(49 poses, no timestamps)" in err and "(50 poses, no timestamps)" in err


@pytest.mark.parametrize("fraction", ["0", "1.5"])
def test_min_matched_fraction_out_of_range_is_refused(tmp_path, capsys, fraction):
    path = tmp_path / "traj.txt"
    write_tum_trajectory(path, np.arange(10) / TUM_RATE_HZ, curved_path(10))
    code, _, err = run_pose(capsys, path, path, "--min-matched-fraction", fraction)
    assert code == 2 and "min_matched_fraction must lie in (0, 1]" in err


def test_times_for_a_timestamped_file_are_refused(tmp_path, capsys):
    path, times = tmp_path / "traj.txt", tmp_path / "times.txt"
    write_tum_trajectory(path, np.arange(10) / TUM_RATE_HZ, curved_path(10))
    times.write_text("".join(f"{i / 10.0}\n" for i in range(10)))
    code, _, err = run_pose(capsys, path, path, "--reference-times", times)
    assert code == 2 and f"{path}: a TUM file carries its own timestamps" in err and "drop the option" in err
