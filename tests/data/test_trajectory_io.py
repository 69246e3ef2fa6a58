"""Trajectory files: format detection, round trips, agreement with evo on the real files, and bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from priordepth_core.data.errors import DatasetError
from priordepth_core.data.trajectory_io import read_trajectory, write_kitti_poses, write_tum_trajectory


def random_poses(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = Rotation.random(n, random_state=seed).as_matrix()
    T[:, :3, 3] = rng.normal(scale=300.0, size=(n, 3))
    return T


def test_tum_round_trip_is_exact(tmp_path):
    T = random_poses(50)
    stamps = 1305031098.6659 + np.arange(50) / 30.0 + 1e-6
    path = tmp_path / "traj.txt"
    write_tum_trajectory(path, stamps, T)
    stamps_read, T_read = read_trajectory(path)
    assert stamps_read.dtype == np.float64 and T_read.dtype == np.float64
    assert T_read.shape == (50, 4, 4)
    np.testing.assert_array_equal(stamps_read, stamps)
    np.testing.assert_allclose(T_read, T, atol=1e-9, rtol=0)


def test_kitti_round_trip_is_exact_and_stamps(tmp_path):
    T = random_poses(20, seed=1)
    path = tmp_path / "00.txt"
    write_kitti_poses(path, T)
    stamps, T_read = read_trajectory(path)
    np.testing.assert_array_equal(T_read, T)  # repr-formatted floats round trip bit-exactly
    np.testing.assert_allclose(stamps, np.arange(20) * 0.1)
    times = tmp_path / "times.txt"
    times.write_text("".join(f"{0.1037 * i:e}\n" for i in range(20)))
    stamps, _ = read_trajectory(path, times_path=times)
    np.testing.assert_allclose(stamps, 0.1037 * np.arange(20), rtol=1e-6)


def test_euroc_is_scalar_first_and_nanoseconds(tmp_path):
    q_wxyz = np.array([0.161996, 0.789985, -0.205376, 0.554528])
    path = tmp_path / "data.csv"
    path.write_text(
        "#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], q_RS_y [], q_RS_z [], v_x\n"
        f"1403715524907143168,0.5,2.0,0.9,{','.join(map(str, q_wxyz))},0.1\n"
    )
    stamps, T = read_trajectory(path)
    assert stamps[0] == pytest.approx(1403715524.907143168, abs=1e-6)
    expected = Rotation.from_quat(q_wxyz[[1, 2, 3, 0]] / np.linalg.norm(q_wxyz)).as_matrix()
    np.testing.assert_allclose(T[0, :3, :3], expected, atol=1e-12)
    np.testing.assert_allclose(T[0, :3, 3], [0.5, 2.0, 0.9])


def test_forced_format_overrides_detection(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("0 0 0 0 0 0 0 1\n")
    with pytest.raises(DatasetError, match=r"t\.txt:1: expected 12 columns"):
        read_trajectory(path, format="kitti")


@pytest.mark.parametrize(
    "content, fmt, pattern",
    [
        ("# c\n0 1 2 3 0 0 0 1\n0 1 2 3 0 0 1\n", None, r"bad\.txt:3: expected 8 columns.*got 7"),
        ("0 1 2 x 0 0 0 1\n", None, r"bad\.txt:1: non-numeric value"),
        ("0 1 2 3 0 0 0 1\n1 1 2 3 0 0 0.5 0.5\n", None, r"bad\.txt:2: quaternion is not unit length"),
        ("1 0 0 0 0 1 0 0 0 0 1 0\n1.2 0 0 0 0 1 0 0 0 0 1 0\n", None, r"bad\.txt:2: 3x3 block is not a rotation"),
        ("-1 0 0 0 0 1 0 0 0 0 1 0\n", None, r"bad\.txt:1: 3x3 block is not a rotation.*det -1"),
        ("1,2,3\n", None, r"bad\.txt:1: expected at least 8 comma-separated"),
        ("1 2 3 4 5\n", None, r"bad\.txt:1: cannot detect the trajectory format from 5 columns"),
        ("# only a comment\n", None, r"bad\.txt: trajectory file has no data lines"),
        ("0 1 2 nan 0 0 0 1\n", None, r"bad\.txt:1: non-finite"),
    ],
)
def test_bad_files_name_file_line_and_problem(tmp_path, content, fmt, pattern):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(DatasetError, match=pattern):
        read_trajectory(path, format=fmt)


def test_missing_file_and_mismatched_times(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.txt: cannot read"):
        read_trajectory(tmp_path / "nope.txt")
    path = tmp_path / "00.txt"
    write_kitti_poses(path, random_poses(3))
    times = tmp_path / "times.txt"
    times.write_text("0\n0.1\n")
    with pytest.raises(DatasetError, match=r"times\.txt: has 2 stamps but the pose file has 3 poses"):
        read_trajectory(path, times_path=times)


def test_writers_validate_shapes(tmp_path):
    with pytest.raises(ValueError, match="T_world_cam must have shape"):
        write_kitti_poses(tmp_path / "x.txt", np.eye(4))
    with pytest.raises(ValueError, match="stamps must have shape"):
        write_tum_trajectory(tmp_path / "x.txt", np.zeros(2), random_poses(3))


REAL_FILES = [
    ("KITTI_00_gt.txt", "kitti", "KITTI_00_gt_times.txt", 4541),
    ("KITTI_00_ORB.txt", "kitti", None, 4541),
    ("freiburg1_xyz-groundtruth.txt", "tum", None, 3000),
    ("freiburg1_xyz-ORB_kf_mono.txt", "tum", None, 32),
    ("fr2_desk_groundtruth.txt", "tum", None, 20957),
    ("fr2_desk_ORB.txt", "tum", None, 2893),
    ("V102_groundtruth.csv", "euroc", None, 16702),
]


@pytest.mark.parametrize("name, fmt, times, count", REAL_FILES, ids=[r[0] for r in REAL_FILES])
def test_real_files_agree_with_evo(shared_data, tmp_path, monkeypatch, name, fmt, times, count):
    monkeypatch.setenv("HOME", str(tmp_path))  # evo writes its settings under $HOME on import
    from evo.tools import file_interface

    folder = shared_data / "trajectories"
    path = folder / name
    stamps, T = read_trajectory(path, times_path=folder / times if times else None)
    assert T.shape == (count, 4, 4) and stamps.shape == (count,)
    if fmt == "kitti":
        reference = file_interface.read_kitti_poses_file(str(path))
    elif fmt == "tum":
        reference = file_interface.read_tum_trajectory_file(str(path))
    else:
        reference = file_interface.read_euroc_csv_trajectory(str(path))
    np.testing.assert_allclose(T, np.stack(reference.poses_se3), atol=1e-9, rtol=0)
    if fmt != "kitti":
        np.testing.assert_allclose(stamps, reference.timestamps, atol=1e-6, rtol=0)
    else:
        assert np.all(np.diff(stamps) > 0)
    if times:
        assert stamps[1] == pytest.approx(0.1037359)
