"""ATE and RPE against evo on real ORB-SLAM estimates and their ground truth (../shared/data/trajectories)."""

import numpy as np
import pytest

from priordepth_core.data.trajectory_io import read_trajectory
from priordepth_core.evaluate.pose_metrics import absolute_trajectory_error, relative_pose_error

REL = 1e-6


@pytest.fixture
def evo_modules(tmp_path, monkeypatch):
    # evo writes its settings under $HOME on first import.
    monkeypatch.setenv("HOME", str(tmp_path))
    from evo.core import metrics, sync
    from evo.tools import file_interface
    return metrics, sync, file_interface


def _evo_ape_rpe(metrics, traj_ref, traj_est):
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((traj_ref, traj_est))
    results = {"ape": ape.get_all_statistics()}
    for name, relation in (("rpe_t", metrics.PoseRelation.translation_part),
                           ("rpe_r", metrics.PoseRelation.rotation_angle_deg)):
        rpe = metrics.RPE(relation, delta=1, delta_unit=metrics.Unit.frames, all_pairs=False)
        rpe.process_data((traj_ref, traj_est))
        results[name] = rpe.get_all_statistics()
    return results


def _compare(ours, theirs):
    for key in ("rmse", "mean", "median", "std", "min", "max", "sse"):
        assert ours[key] == pytest.approx(theirs[key], rel=REL, abs=1e-12), key


def test_tum_fr2_desk_orb_sim3_matches_evo(shared_data, evo_modules):
    metrics, sync, file_interface = evo_modules
    folder = shared_data / "trajectories"
    ref_path, est_path = folder / "fr2_desk_groundtruth.txt", folder / "fr2_desk_ORB.txt"
    evo_ref, evo_est = sync.associate_trajectories(file_interface.read_tum_trajectory_file(str(ref_path)),
                                                   file_interface.read_tum_trajectory_file(str(est_path)),
                                                   max_diff=0.01)
    # Our side: our reader, rows picked by the stamps evo associated.
    ref_stamps, T_ref = read_trajectory(ref_path)
    est_stamps, T_est = read_trajectory(est_path)
    T_ref = T_ref[np.searchsorted(ref_stamps, evo_ref.timestamps)]
    T_est = T_est[np.searchsorted(est_stamps, evo_est.timestamps)]
    np.testing.assert_allclose(T_ref[:, :3, 3], evo_ref.positions_xyz, atol=1e-12)

    evo_est.align(evo_ref, correct_scale=True)
    theirs = _evo_ape_rpe(metrics, evo_ref, evo_est)
    ate = absolute_trajectory_error(T_est, T_ref, "sim3")
    rpe = relative_pose_error(T_est, T_ref, delta=1, alignment="sim3")
    _compare(ate, theirs["ape"])
    _compare(rpe["translation"], theirs["rpe_t"])
    _compare(rpe["rotation_deg"], theirs["rpe_r"])
    assert ate["num_poses"] == evo_ref.num_poses > 2000
    print(f"fr2_desk ORB sim3 ({ate['num_poses']} poses): ATE rmse ours {ate['rmse']:.9f} evo "
          f"{theirs['ape']['rmse']:.9f}; RPE t rmse ours {rpe['translation']['rmse']:.9f} evo "
          f"{theirs['rpe_t']['rmse']:.9f}; RPE r rmse ours {rpe['rotation_deg']['rmse']:.9f} evo "
          f"{theirs['rpe_r']['rmse']:.9f}")


def test_kitti_00_orb_sim3_matches_evo(shared_data, evo_modules):
    metrics, _, file_interface = evo_modules
    folder = shared_data / "trajectories"
    ref_path, est_path = folder / "KITTI_00_gt.txt", folder / "KITTI_00_ORB.txt"
    evo_ref = file_interface.read_kitti_poses_file(str(ref_path))
    evo_est = file_interface.read_kitti_poses_file(str(est_path))
    _, T_ref = read_trajectory(ref_path)
    _, T_est = read_trajectory(est_path)
    evo_est.align(evo_ref, correct_scale=True)
    theirs = _evo_ape_rpe(metrics, evo_ref, evo_est)
    ate = absolute_trajectory_error(T_est, T_ref, "sim3")
    rpe = relative_pose_error(T_est, T_ref, delta=1, alignment="sim3")
    _compare(ate, theirs["ape"])
    _compare(rpe["translation"], theirs["rpe_t"])
    _compare(rpe["rotation_deg"], theirs["rpe_r"])
    print(f"KITTI 00 ORB sim3 ({ate['num_poses']} poses): ATE rmse ours {ate['rmse']:.9f} evo "
          f"{theirs['ape']['rmse']:.9f}; RPE t rmse ours {rpe['translation']['rmse']:.9f} evo "
          f"{theirs['rpe_t']['rmse']:.9f}; RPE r rmse ours {rpe['rotation_deg']['rmse']:.9f} evo "
          f"{theirs['rpe_r']['rmse']:.9f}")
