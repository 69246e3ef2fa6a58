"""KITTI odometry reader: calibration, the cam0 -> cam2 pose offset, relative poses, exact depth, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import (
    KITTI_ODOM_HW,
    KITTI_ODOM_P,
    check_common_sample,
    frame_color,
    mean_color,
    truncate,
    write_kitti_odometry,
)

from priordepth_core.data import Augmentation, DatasetError, FrameSamples, KittiOdometryReader
from priordepth_core.geometry.camera import project_points, transform_points


def test_samples_poses_and_intrinsics(tmp_path):
    T_world_cam0 = write_kitti_odometry(tmp_path, num_frames=5)
    dataset = FrameSamples(KittiOdometryReader(tmp_path, ["00"]), size_hw=(12, 24), context_offsets=(-2, 1))
    assert len(dataset) == 2  # targets 2 and 3 have frames at -2 and +1
    sample = dataset[0]
    check_common_sample(sample, (12, 24), 2, depth_hw=None, has_poses=True)
    assert sample["frame_index"] == 2 and sample["sequence"] == "00"
    assert sample["context_offsets"].tolist() == [-2, 1]
    assert sample["stamp"] == pytest.approx(2 * 0.103736)
    np.testing.assert_allclose(mean_color(sample["context"][0]), frame_color(0), atol=0.01)
    np.testing.assert_allclose(mean_color(sample["context"][1]), frame_color(3), atol=0.01)
    torch.testing.assert_close(sample["K"], torch.tensor([[20.0, 0, 11.5], [0, 20.0, 5.5], [0, 0, 1]]))

    # P2 = K [I | t] with t = (0.06, 0.001, 0.004): camera 2 sits at -t in camera 0's frame (6 cm left).
    T_cam0_cam2 = np.eye(4)
    T_cam0_cam2[:3, 3] = -np.array([0.06, 0.001, 0.004])
    expected_T_world_cam2 = T_world_cam0 @ T_cam0_cam2
    np.testing.assert_allclose(sample["T_world_cam"].numpy(), expected_T_world_cam2[2], atol=1e-5)
    for k, offset in enumerate((-2, 1)):
        expected = np.linalg.inv(expected_T_world_cam2[2 + offset]) @ expected_T_world_cam2[2]
        np.testing.assert_allclose(sample["T_context_target"][k].numpy(), expected, atol=1e-5)
    # The same relation seen from the context frame's own sample.
    later = dataset[1]
    torch.testing.assert_close(sample["T_context_target"][1],
                               torch.linalg.inv(later["T_world_cam"]) @ sample["T_world_cam"], atol=1e-5, rtol=0)
    # The rotation between frames is the grey camera's; the translation differs by the lever arm.
    R_rel0 = (np.linalg.inv(T_world_cam0[0]) @ T_world_cam0[2])[:3, :3]
    np.testing.assert_allclose(sample["T_context_target"][0, :3, :3].numpy(), R_rel0, atol=1e-5)


def test_exact_depth_and_camera_choice(tmp_path):
    write_kitti_odometry(tmp_path, num_frames=4, with_depth=True)
    native = FrameSamples(KittiOdometryReader(tmp_path, ["00"]), (12, 24), depth_at_native_resolution=True)
    sample = native[0]
    check_common_sample(sample, (12, 24), 2, depth_hw=KITTI_ODOM_HW, has_poses=True)
    assert sample["depth_gt"][0, 0, 0].item() == 0.0  # NaN in the file is invalid
    assert sample["depth_gt"][0, 5, 7].item() == pytest.approx(3.0)  # frame 1 holds 2 + 1 metres
    resized = FrameSamples(KittiOdometryReader(tmp_path, ["00"]), (12, 24))[0]["depth_gt"]
    assert resized.shape == (1, 12, 24) and resized[0, 3, 3].item() == pytest.approx(3.0)

    no_poses = FrameSamples(KittiOdometryReader(tmp_path, ["00"], with_poses=False), (12, 24))
    assert "T_world_cam" not in no_poses[0] and "T_context_target" not in no_poses[0]
    with pytest.raises(DatasetError, match=r"image_3: image folder does not exist"):
        KittiOdometryReader(tmp_path, ["00"], camera=3)


def test_sequences_without_poses_have_no_pose_keys(tmp_path):
    write_kitti_odometry(tmp_path, sequence="11", num_frames=3, with_poses=False)
    sample = FrameSamples(KittiOdometryReader(tmp_path, ["11"]), (12, 24))[0]
    check_common_sample(sample, (12, 24), 2, depth_hw=None, has_poses=False)
    with pytest.raises(DatasetError, match=r"poses/11\.txt: pose file does not exist"):
        KittiOdometryReader(tmp_path, ["11"], with_poses=True)


def test_flip_keeps_geometry_consistent(tmp_path):
    write_kitti_odometry(tmp_path, num_frames=4)
    plain = FrameSamples(KittiOdometryReader(tmp_path, ["00"]), (12, 24))[0]
    flipped = FrameSamples(KittiOdometryReader(tmp_path, ["00"]), (12, 24), augmentation=Augmentation(
        color_jitter_probability=0.0, flip_probability=1.0))[0]
    width = 24
    # A target point seen at u maps into each context frame; its mirror image must land at the mirrored pixel.
    X_target = torch.tensor([[[0.7, -0.3, 6.0], [-1.2, 0.4, 9.0]]])
    X_mirror = X_target * torch.tensor([-1.0, 1.0, 1.0])
    for k in range(2):
        u_plain, _, _ = project_points(transform_points(plain["T_context_target"][k][None], X_target), plain["K"][None])
        u_flip, _, _ = project_points(transform_points(flipped["T_context_target"][k][None], X_mirror),
                                   flipped["K"][None])
        torch.testing.assert_close(u_flip[..., 0], (width - 1) - u_plain[..., 0], atol=1e-4, rtol=0)
        torch.testing.assert_close(u_flip[..., 1], u_plain[..., 1], atol=1e-4, rtol=0)
    R = flipped["T_world_cam"][:3, :3]
    assert torch.det(R).item() == pytest.approx(1.0, abs=1e-5)


def test_mismatched_counts_and_bad_files(tmp_path):
    write_kitti_odometry(tmp_path, num_frames=4)
    folder = tmp_path / "sequences" / "00"
    with pytest.raises(DatasetError, match=r"sequences: KITTI odometry sequences folder does not exist"):
        KittiOdometryReader(tmp_path / "elsewhere", ["00"])
    with pytest.raises(DatasetError, match=r"sequences/07/image_2: image folder does not exist"):
        KittiOdometryReader(tmp_path, ["07"], with_poses=False)

    poses = tmp_path / "poses" / "00.txt"
    good_poses = poses.read_text()
    poses.write_text(good_poses + "1 0 0 0 0 1 0 0 0 0 1\n")
    with pytest.raises(DatasetError, match=r"00\.txt:5: expected 12 columns"):
        KittiOdometryReader(tmp_path, ["00"])
    poses.write_text(good_poses + "1 0 0 0 0 1 0 0 0 0 1 0\n")
    with pytest.raises(DatasetError, match=r"00\.txt: has 5 poses but .*image_2 has 4 images"):
        KittiOdometryReader(tmp_path, ["00"])
    poses.write_text(good_poses)

    times = folder / "times.txt"
    times.write_text("0.0\n0.1\n0.2\n")
    with pytest.raises(DatasetError, match=r"times\.txt: has 3 stamps but .*image_2 has 4 images"):
        KittiOdometryReader(tmp_path, ["00"])
    times.write_text("0.0\n0.1\nabc\n0.3\n")
    with pytest.raises(DatasetError, match=r"times\.txt: cannot parse stamps"):
        KittiOdometryReader(tmp_path, ["00"])
    times.write_text("0.0\n0.1\n0.2\n0.3\n")

    calib = folder / "calib.txt"
    calib.write_text("P0: 1 0 0\n")
    with pytest.raises(DatasetError, match=r"calib\.txt: missing calibration entry 'P2'"):
        KittiOdometryReader(tmp_path, ["00"])
    calib.write_text("P2: 1 0 0\n")
    with pytest.raises(DatasetError, match=r"calib\.txt: P2 has 3 values, expected 12"):
        KittiOdometryReader(tmp_path, ["00"])
    calib.write_text("".join(f"P{c}: " + " ".join(map(str, KITTI_ODOM_P[c].ravel())) + "\n" for c in range(4)))

    (folder / "depth_exact").mkdir()
    np.save(folder / "depth_exact" / "000000.npy", np.ones((24, 48), np.float32))
    with pytest.raises(DatasetError, match=r"depth_exact/000001\.npy: depth file missing \(3 of 4 frames"):
        KittiOdometryReader(tmp_path, ["00"])
    for i in range(1, 4):
        np.save(folder / "depth_exact" / f"{i:06d}.npy", np.ones((24, 48), np.int32))
    with pytest.raises(DatasetError, match=r"000001\.npy: depth array must be \(H, W\) floating point"):
        FrameSamples(KittiOdometryReader(tmp_path, ["00"]), (12, 24))[0]
    for i in range(4):
        (folder / "depth_exact" / f"{i:06d}.npy").unlink()
    (folder / "depth_exact").rmdir()

    truncate(folder / "image_2" / "000001.png")
    with pytest.raises(DatasetError, match=r"image_2/000001\.png: cannot decode image"):
        FrameSamples(KittiOdometryReader(tmp_path, ["00"]), (12, 24))[0]
    with pytest.raises(ValueError, match="sequences must be a non-empty list"):
        KittiOdometryReader(tmp_path, "00")
