import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from priordepth_core.evaluate.pose_metrics import (
    absolute_trajectory_error,
    align_trajectory,
    kitti_odometry_error,
    relative_pose_error,
    snippet_ate,
    snippet_ate_sequence,
    umeyama_alignment,
)


def _poses(R, t):
    T = np.tile(np.eye(4), (len(t), 1, 1))
    T[:, :3, :3] = R
    T[:, :3, 3] = t
    return T


def _random_trajectory(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return _poses(Rotation.random(n, random_state=seed).as_matrix(), np.cumsum(rng.normal(size=(n, 3)), axis=0))


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3))
    R = Rotation.random(random_state=3).as_matrix()
    y = 2.5 * x @ R.T + np.array([1.0, -2.0, 0.5])
    R_est, t_est, s_est = umeyama_alignment(x, y, with_scale=True)
    np.testing.assert_allclose(R_est, R, atol=1e-12)
    np.testing.assert_allclose(t_est, [1.0, -2.0, 0.5], atol=1e-12)
    assert s_est == pytest.approx(2.5)
    with pytest.raises(ValueError, match="degenerate"):
        umeyama_alignment(np.zeros((5, 3)), np.zeros((5, 3)))


def test_alignment_modes_and_ate():
    ref = _random_trajectory()
    S = np.eye(4)
    S[:3, :3] = Rotation.from_rotvec([0.1, -0.3, 0.2]).as_matrix()
    S[:3, 3] = [3.0, 1.0, -2.0]
    est = S @ ref
    est[:, :3, 3] *= 0.5  # a monocular estimate at half scale (scaled about the origin after the transform)
    assert absolute_trajectory_error(est, ref, "sim3")["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert absolute_trajectory_error(est, ref, "se3")["rmse"] > 1.0
    aligned, info = align_trajectory(est, ref, "sim3")
    assert info["scale"] == pytest.approx(2.0) and info["alignment"] == "sim3"
    np.testing.assert_allclose(aligned, ref, atol=1e-9)
    scaled = ref.copy()
    scaled[:, :3, 3] *= 3.0
    result = absolute_trajectory_error(scaled, ref, "scale")
    assert result["rmse"] == pytest.approx(0.0, abs=1e-9) and result["scale"] == pytest.approx(1 / 3)
    assert absolute_trajectory_error(ref, ref, "none")["max"] == 0.0
    with pytest.raises(ValueError, match="alignment"):
        align_trajectory(ref, ref, "affine")
    with pytest.raises(ValueError, match="T_world_est"):
        align_trajectory(ref[:-1], ref)


def test_rpe_by_hand():
    # Reference moves 1 m along x per frame; the estimate moves 1.1 m and yaws 2 degrees more per frame.
    n = 6
    ref = _poses(np.eye(3), np.outer(np.arange(n), [1.0, 0, 0]))
    rotations = Rotation.from_rotvec(np.outer(np.arange(n), [0, np.radians(2.0), 0])).as_matrix()
    est = _poses(rotations, np.outer(np.arange(n), [1.1, 0, 0]))
    result = relative_pose_error(est, ref, delta=1)
    np.testing.assert_allclose(result["rotation_errors_deg"], 2.0, atol=1e-9)
    assert len(result["translation_errors"]) == n - 1
    # E = (Q_rel)^-1 P_rel with P_rel = [R_i^T R_j, R_i^T (1.1 x)]: translation R_i^T (1.1, 0, 0) - (1, 0, 0).
    expected = [np.linalg.norm(rotations[i].T @ [1.1, 0, 0] - [1.0, 0, 0]) for i in range(n - 1)]
    np.testing.assert_allclose(result["translation_errors"], expected, atol=1e-12)
    assert relative_pose_error(est, ref, delta=2)["pairs"].tolist() == [[0, 2], [2, 4]]


def test_kitti_errors_on_a_straight_line():
    n = 1000
    ref = _poses(np.eye(3), np.outer(np.arange(n), [0, 0, 1.0]))  # 1 m per frame forward
    est = ref.copy()
    est[:, :3, 3] *= 1.01
    result = kitti_odometry_error(est, ref)
    # Segment L starts every 10 frames while first + L + 1 <= 999: the last frame is the first strictly beyond L
    # metres, so the segment covers L + 1 metres and its error 0.01 (L + 1) is divided by L.
    lengths = [length for length in range(100, 801, 100) for _ in range((998 - length) // 10 + 1)]
    assert result["num_segments"] == len(lengths)
    expected = np.mean([0.01 * (length + 1) / length for length in lengths]) * 100
    assert result["t_err_percent"] == pytest.approx(expected, rel=1e-9)
    assert result["r_err_deg_per_100m"] == pytest.approx(0.0, abs=1e-9)
    assert result["per_length"][100.0][2] == (998 - 100) // 10 + 1

    alpha = np.radians(0.01)  # extra yaw per frame
    est = ref.copy()
    est[:, :3, :3] = Rotation.from_rotvec(np.outer(np.arange(n), [0, alpha, 0])).as_matrix()
    result = kitti_odometry_error(est, ref)
    # A segment of length L spans L + 1 frames: rotation error alpha (L + 1), divided by L.
    per_segment = [alpha * (length + 1) / length for length in lengths]
    assert result["r_err_deg_per_100m"] == pytest.approx(np.degrees(np.mean(per_segment)) * 100, rel=1e-9)
    with pytest.raises(ValueError, match="shorter"):
        kitti_odometry_error(ref[:50], ref[:50])


def test_snippet_ate_by_hand_and_on_exact_poses():
    gt = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    assert snippet_ate(gt, np.array([[0.0, 0, 0], [1.0, 1.0, 0]])) == pytest.approx(np.sqrt(0.5) / 2)
    assert snippet_ate(gt, 0.5 * gt + 3.0) == pytest.approx(0.0, abs=1e-15)  # offset and scale are free
    ref = _random_trajectory(12, seed=5)
    local = np.linalg.inv(np.linalg.inv(ref[:-1]) @ ref[1:])
    result = snippet_ate_sequence(local, ref)
    assert result["mean"] == pytest.approx(0.0, abs=1e-12) and len(result["errors"]) == 11
    noisy = local.copy()
    noisy[:, :3, 3] += 0.3
    assert snippet_ate_sequence(noisy, ref)["mean"] > 0.01
