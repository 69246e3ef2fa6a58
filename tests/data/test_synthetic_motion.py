"""Camera paths: speeds and rotation rates of each motion kind, free space, and the free-space check itself."""

from __future__ import annotations

import numpy as np
import pytest

from priordepth_core.data.synthetic import (
    SequenceSpec,
    build_scene,
    camera_clearance,
    check_free_space,
    make_sequence,
    make_trajectory,
    motion_statistics,
)
from priordepth_core.data.synthetic.motion import Trajectory


def _median_over_seeds(motion: str, key: str, frames: int = 120) -> float:
    return float(np.median([motion_statistics(make_trajectory(motion, "room", seed, frames))[key]
                            for seed in range(4)]))


def test_car_moves_like_kitti():
    trajectory = make_trajectory("car", "street", 0, 200)
    speed = np.linalg.norm(np.diff(trajectory.positions, axis=0), axis=1) * 10.0
    assert 5.0 - 1e-9 <= speed.min() and speed.max() <= 12.0 + 0.1
    np.testing.assert_allclose(trajectory.positions[:, 2], 1.65, atol=0.02)
    forward = trajectory.T_world_cam[:, :3, 2]
    assert np.abs(forward[:, 2]).max() < np.sin(np.deg2rad(3.0))  # looks along the road
    assert np.allclose(np.diff(trajectory.stamps), 0.1)


def test_handheld_is_fast_and_rotation_heavy():
    assert _median_over_seeds("handheld", "rotation_deg_median") > 2.0  # several degrees per frame
    assert 0.01 < _median_over_seeds("handheld", "translation_m_median") < 0.08  # a few cm per frame


def test_slow_moves_like_tum_desk_sequences():
    # TUM fr1_xyz / fr2_desk at 30 Hz: ~0.5 deg and ~1 cm per frame (measured from the ground-truth files).
    assert _median_over_seeds("slow", "rotation_deg_median") < 1.0
    assert _median_over_seeds("slow", "translation_m_median") < 0.02


@pytest.mark.parametrize("scene, motion", [("street", "car"), ("room", "handheld"), ("room", "slow")])
def test_generated_paths_stay_in_free_space(scene, motion):
    sequence = make_sequence(SequenceSpec(scene, motion, 150, 32, 24, seed=4))
    assert camera_clearance(sequence.scene, sequence.trajectory.positions).min() > 0.3


def test_free_space_check_rejects_a_path_through_a_wall():
    trajectory = make_trajectory("handheld", "room", 0, 10)
    scene = build_scene("room", 0, trajectory.positions)
    outside = trajectory.T_world_cam.copy()
    outside[5:, 0, 3] += 40.0  # jumps through the wall
    with pytest.raises(ValueError, match=r"passes through a surface|from a surface"):
        check_free_space(scene, Trajectory(trajectory.stamps, outside))
