"""Round trips dataset -> *2bag -> bag2frames -> the trainer's TUM reader: identical images, intrinsics, stamps and
poses, depth within TUM's 1/5000 m quantisation (exact with --depth-exact); bag contents checked against hand-computed
calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from priordepth_core.data import KittiOdometryReader, KittiRawReader, TumRgbdReader, read_trajectory
from priordepth_core.data.frames import load_depth_npy, load_depth_png, load_rgb
from priordepth_core.data.kitti_raw import read_velodyne_bin, velodyne_projection, velodyne_to_depth_map
from priordepth_core.data.tum_rgbd import read_intrinsics_file
from rosbag_tools.messages import matrix_from_pose, stamp_to_nanoseconds

TUM_QUANTUM_M = 1.0 / 5000.0
POSE_TOLERANCE = 1e-9  # quaternion round trip of a rotation, float64
STAMP_TOLERANCE_S = 1e-6  # float seconds of epoch stamps keep about 0.2 microseconds


def reader_frames(dataset) -> list[dict]:
    """Stamp, RGB (uint8), K, pose and depth (float metres) of every indexed frame, through public loaders."""
    frames = []
    for frame in dataset.sequences[0]:
        depth = None
        if frame.depth is not None and frame.depth.suffix == ".npy":
            depth = load_depth_npy(frame.depth)
        elif frame.depth is not None and frame.depth.suffix == ".png":
            depth = load_depth_png(frame.depth, 5000.0)
        frames.append({"stamp": frame.stamp, "rgb": load_rgb(frame.image), "K": frame.K, "T": frame.T_world_cam,
                       "depth": depth})
    return frames


def back_from_bag(cli, bag: Path, out: Path, *extra, poses: bool = True) -> list[dict]:
    pose_options = ["--pose-topic", "/ground_truth/odometry"] if poses else []
    status, _, err = cli("bag2frames", bag, "-o", out, *pose_options, "--depth-topic", "/ground_truth/depth",
                         "--no-progress", *extra)
    assert status == 0, err
    return reader_frames(TumRgbdReader(out))


def assert_same_frames(original: list[dict], back: list[dict], depth_tolerance: float) -> None:
    assert len(back) == len(original)
    for a, b in zip(original, back):
        assert abs(a["stamp"] - b["stamp"]) < STAMP_TOLERANCE_S
        np.testing.assert_array_equal(b["rgb"], a["rgb"])
        np.testing.assert_allclose(b["K"], a["K"], rtol=0, atol=1e-12)
        if a["T"] is not None:
            np.testing.assert_allclose(b["T"], a["T"], rtol=0, atol=POSE_TOLERANCE)
        if a["depth"] is not None:
            representable = a["depth"] <= 65535 * TUM_QUANTUM_M
            np.testing.assert_array_equal(b["depth"] > 0, (a["depth"] > 0) & representable)
            np.testing.assert_allclose(b["depth"][representable], a["depth"][representable], rtol=0,
                                       atol=depth_tolerance)


def read_bag(bag: Path) -> dict[str, list]:
    """Topic -> [(bag time, message)] of every message, via rosbags' AnyReader."""
    messages: dict[str, list] = {}
    with AnyReader([bag]) as reader:
        for connection, timestamp, raw in reader.messages():
            messages.setdefault(connection.topic, []).append((timestamp, reader.deserialize(raw, connection.msgtype)))
    return messages


def image_array(message) -> np.ndarray:
    channels = {"rgb8": 3, "32FC1": 1}[message.encoding]
    dtype = np.uint8 if message.encoding == "rgb8" else np.dtype("<f4")
    data = np.frombuffer(bytes(message.data), dtype=dtype)
    return data.reshape(message.height, message.width, channels).squeeze()


# ------------------------------------------------------------------------------------------------------- synthetic

@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_synthetic_sequence_round_trip(cli, synthetic_tum_sequence, tmp_path, storage):
    bag = tmp_path / "synthetic_bag"
    status, out, err = cli("synth2bag", "--sequence", synthetic_tum_sequence, "-o", bag, "--storage", storage,
                           "--no-progress")
    assert status == 0, err
    assert "5 frames" in out
    suffix = {"mcap": ".mcap", "sqlite3": ".db3"}[storage]
    assert (bag / f"synthetic_bag{suffix}").is_file() and (bag / "metadata.yaml").is_file()

    original = reader_frames(TumRgbdReader(synthetic_tum_sequence))  # exact float depth
    assert all(f["depth"].dtype == np.float32 and f["T"] is not None for f in original)
    back = back_from_bag(cli, bag, tmp_path / "frames")
    # Depth comes back from TUM's 16-bit PNG: within half a quantum (plus float32 rounding of the metres).
    assert_same_frames(original, back, depth_tolerance=TUM_QUANTUM_M / 2 + 1e-6)

    exact = back_from_bag(cli, bag, tmp_path / "frames_exact", "--depth-exact")
    assert_same_frames(original, exact, depth_tolerance=0.0)


def test_synth2bag_rendered_on_the_fly_matches_the_written_sequence(cli, synthetic_tum_sequence, tmp_path):
    bag = tmp_path / "rendered"
    status, _, err = cli("synth2bag", "--scene", "room", "--motion", "handheld", "--frames", 5, "--size", "64x48",
                         "--seed", 0, "-o", bag, "--no-progress")
    assert status == 0, err
    messages = read_bag(bag)
    written = reader_frames(TumRgbdReader(synthetic_tum_sequence))
    K, size_hw = read_intrinsics_file(synthetic_tum_sequence / "intrinsics.txt")
    assert len(messages["/camera/image"]) == len(written) == 5
    for (t, image), (_, info), (_, depth), (_, tf), (_, odometry), frame in zip(
            messages["/camera/image"], messages["/camera/camera_info"], messages["/ground_truth/depth"],
            messages["/tf"], messages["/ground_truth/odometry"], written):
        assert t == stamp_to_nanoseconds(image.header.stamp) == round(frame["stamp"] * 1e9)
        assert image.header.frame_id == info.header.frame_id == "camera_optical"
        np.testing.assert_array_equal(image_array(image), frame["rgb"])
        np.testing.assert_array_equal(np.nan_to_num(image_array(depth), nan=0.0), frame["depth"])
        assert (info.height, info.width) == size_hw
        np.testing.assert_array_equal(info.k.reshape(3, 3), K)
        np.testing.assert_array_equal(info.p.reshape(3, 4), np.concatenate([K, np.zeros((3, 1))], axis=1))
        transform = tf.transforms[0]
        assert (transform.header.frame_id, transform.child_frame_id) == ("world", "gt_camera")
        T_tf = matrix_from_pose(transform.transform.translation, transform.transform.rotation)
        T_odometry = matrix_from_pose(odometry.pose.pose.position, odometry.pose.pose.orientation)
        np.testing.assert_allclose(T_tf, frame["T"], rtol=0, atol=POSE_TOLERANCE)
        np.testing.assert_allclose(T_odometry, frame["T"], rtol=0, atol=POSE_TOLERANCE)
        assert (odometry.header.frame_id, odometry.child_frame_id) == ("world", "gt_camera")
    assert "/tf_static" not in messages  # a synthetic camera has no fixed transforms


def test_synth2bag_picks_a_sequence_of_a_cached_suite(cli, synthetic_tum_sequence, tmp_path):
    import json
    import shutil

    # A cached suite is a folder with suite.json beside its sequences (priordepth_core/data/synthetic/suites.py);
    # ensure_suite uses it as it is, so this tiny stand-in is not regenerated.
    suite = tmp_path / "suites" / "handheld-v1"
    for split, seed in (("train", 200), ("test", 910), ("test", 911)):
        shutil.copytree(synthetic_tum_sequence, suite / split / f"seed_{seed:04d}")
    manifest = {"name": "handheld", "version": 1, "format": "tum", "splits": {
        "train": [{"path": "train/seed_0200", "seed": 200}],
        "test": [{"path": "test/seed_0910", "seed": 910}, {"path": "test/seed_0911", "seed": 911}]}}
    (suite / "suite.json").write_text(json.dumps(manifest))
    (suite / "test" / "seed_0911" / "rgb.txt").write_text("# only one frame here\n" + (
        synthetic_tum_sequence / "rgb.txt").read_text().splitlines()[3] + "\n")

    bag = tmp_path / "suite_bag"
    status, out, err = cli("synth2bag", "--suite", "handheld", "--cache", tmp_path / "suites", "-o", bag,
                           "--no-progress")
    assert status == 0, err
    assert len(read_bag(bag)["/camera/image"]) == 5  # test split, first seed (910)
    status, _, err = cli("synth2bag", "--suite", "handheld", "--seed", 911, "--cache", tmp_path / "suites", "-o",
                         tmp_path / "other", "--no-progress")
    assert status == 1 and "seed_0911" in err  # the one-frame sequence: the reader's error names it
    status, _, err = cli("synth2bag", "--suite", "handheld", "--split", "train", "--seed", 910, "--cache",
                         tmp_path / "suites", "-o", tmp_path / "other")
    assert status == 1 and "seeds [200], not 910" in err
    assert not (tmp_path / "other").exists()


def test_odometry_twist_is_the_finite_difference_velocity_in_the_camera_frame(cli, synthetic_tum_sequence, tmp_path):
    bag = tmp_path / "bag"
    assert cli("synth2bag", "--sequence", synthetic_tum_sequence, "-o", bag, "--no-progress")[0] == 0
    odometry = [m for _, m in read_bag(bag)["/ground_truth/odometry"]]
    stamps, T_world_cam = read_trajectory(synthetic_tum_sequence / "groundtruth.txt")
    for i in (1, 3):
        dt = stamps[i] - stamps[i - 1]
        # Moving from pose i-1 to pose i in dt, seen from camera i: a point fixed in the world moves by -v dt.
        expected_linear = T_world_cam[i][:3, :3].T @ (T_world_cam[i][:3, 3] - T_world_cam[i - 1][:3, 3]) / dt
        twist = odometry[i].twist.twist
        np.testing.assert_allclose([twist.linear.x, twist.linear.y, twist.linear.z], expected_linear, atol=1e-9)
        R_step = T_world_cam[i - 1][:3, :3].T @ T_world_cam[i][:3, :3]
        angle = np.arccos(np.clip((np.trace(R_step) - 1) / 2, -1, 1))
        angular = np.array([twist.angular.x, twist.angular.y, twist.angular.z])
        assert np.linalg.norm(angular) * dt == pytest.approx(angle, abs=1e-9)


# ------------------------------------------------------------------------------------------------------------- TUM

def test_tum_round_trip_with_association(cli, dataset_writers, tmp_path):
    rgb_stamps = 1305031102.175304 + 0.0333 * np.arange(6) + np.array([0, 0.002, -0.001, 0.003, 0, 0.001])
    depth_stamps = rgb_stamps[[0, 1, 2, 4, 5]] + 0.004  # rgb frame 3 has no depth: dropped by the reader
    gt_stamps = rgb_stamps[0] - 0.02 + 0.01 * np.arange(22)  # 100 Hz motion capture
    folder = tmp_path / "rgbd_dataset_freiburg1_xyz"
    dataset_writers.write_tum(folder, rgb_stamps, depth_stamps, gt_stamps)
    original = reader_frames(TumRgbdReader(folder))
    assert len(original) == 5

    bag = tmp_path / "tum_bag"
    status, _, err = cli("tum2bag", folder, "-o", bag, "--no-progress")
    assert status == 0, err
    messages = read_bag(bag)
    assert len(messages["/camera/image"]) == len(messages["/ground_truth/depth"]) == len(messages["/tf"]) == 5
    info = messages["/camera/camera_info"][0][1]
    np.testing.assert_array_equal(info.d, np.zeros(5))  # intrinsics.txt: a rectified pinhole
    # TUM depth PNGs hold whole quanta, so the depth survives exactly.
    assert_same_frames(original, back_from_bag(cli, bag, tmp_path / "frames"), depth_tolerance=0.0)


def test_tum_calibration_table_gives_k_and_distortion_of_the_sensor(cli, dataset_writers, tmp_path):
    folder = tmp_path / "rgbd_dataset_freiburg2_desk"
    stamps = 1311868164.363181 + 0.0333 * np.arange(3)
    dataset_writers.write_tum(folder, stamps, stamps, stamps, image_hw=(480, 640), intrinsics_line=None)
    bag = tmp_path / "fr2"
    assert cli("tum2bag", folder, "-o", bag, "--no-progress")[0] == 0
    info = read_bag(bag)["/camera/camera_info"][0][1]
    assert (info.width, info.height, info.distortion_model) == (640, 480, "plumb_bob")
    np.testing.assert_allclose(info.k, [520.9, 0, 325.1, 0, 521.0, 249.7, 0, 0, 1])
    np.testing.assert_allclose(info.d, [0.2312, -0.7849, -0.0033, -0.0001, 0.9172])


# ----------------------------------------------------------------------------------------------------------- KITTI

def test_kitti_odometry_round_trip_and_velodyne_transform(cli, dataset_writers, tmp_path):
    root = tmp_path / "kitti_odometry"
    dataset_writers.write_kitti_odometry(root, "00", num_frames=5, with_poses=True, with_depth=True)
    original = reader_frames(KittiOdometryReader(root, ["00"]))
    assert all(f["T"] is not None and f["depth"] is not None for f in original)

    bag = tmp_path / "odometry_bag"
    status, _, err = cli("kitti2bag", root / "sequences" / "00", "-o", bag, "--storage", "sqlite3", "--no-progress")
    assert status == 0, err
    assert_same_frames(original, back_from_bag(cli, bag, tmp_path / "frames", "--depth-exact"), depth_tolerance=0.0)

    (_, static), = read_bag(bag)["/tf_static"]
    transform, = static.transforms
    assert (transform.header.frame_id, transform.child_frame_id) == ("camera_optical", "velodyne")
    # calib.txt's Tr is the identity, so camera 2 -> velodyne is camera 2 -> camera 0: P2 = K [I | t] with
    # t = (0.06, 0.001, 0.004), the position of camera 0 seen from camera 2 (tests/data/conftest.py).
    T = matrix_from_pose(transform.transform.translation, transform.transform.rotation)
    np.testing.assert_allclose(T, [[1, 0, 0, 0.06], [0, 1, 0, 0.001], [0, 0, 1, 0.004], [0, 0, 0, 1]], atol=1e-12)


def test_kitti_raw_round_trip_with_velodyne_depth_and_static_transforms(cli, dataset_writers, tmp_path):
    w = dataset_writers
    drive = w.write_kitti_raw(tmp_path / "raw", num_frames=4)
    # Frame 1 sees two velodyne points; MonoDepth2's convention puts a point projecting to (u, v) at (u-1, v-1).
    points = np.array([w.velodyne_point_for_pixel(5 + 1, 7 + 1, 4.0, w.KITTI_RAW_P2),
                       w.velodyne_point_for_pixel(30 + 1, 20 + 1, 12.5, w.KITTI_RAW_P2)])
    np.concatenate([points, np.full((2, 1), 0.5)], axis=1).astype(np.float32).tofile(
        drive / "velodyne_points" / "data" / "0000000001.bin")
    T_imu = np.array([-0.81, 0.32, -0.80])
    (drive.parent / "calib_imu_to_velo.txt").write_text(
        "calib_time: 25-May-2012 16:47:16\nR: 1 0 0 0 1 0 0 0 1\nT: " + " ".join(map(str, T_imu)) + "\n")

    bag = tmp_path / "raw_bag"
    status, _, err = cli("kitti2bag", drive, "-o", bag, "--no-progress")
    assert status == 0, err
    messages = read_bag(bag)

    split = tmp_path / "split.txt"
    split.write_text("".join(f"{w.KITTI_RAW_DATE}/{w.KITTI_RAW_DRIVE} {i} l\n" for i in range(4)))
    reference = KittiRawReader(tmp_path / "raw", split, with_depth=True)
    projection, image_hw = velodyne_projection(drive.parent, 2)
    for (t, image), (_, depth), frame in zip(messages["/camera/image"], messages["/ground_truth/depth"],
                                             reference.sequences[0]):
        assert abs(t * 1e-9 - frame.stamp) < STAMP_TOLERANCE_S
        np.testing.assert_array_equal(image_array(image), load_rgb(frame.image))
        expected = velodyne_to_depth_map(read_velodyne_bin(frame.depth), projection, image_hw)
        np.testing.assert_array_equal(np.nan_to_num(image_array(depth), nan=0.0), expected)
    depth_1 = np.nan_to_num(image_array(messages["/ground_truth/depth"][1][1]), nan=0.0)
    assert np.count_nonzero(depth_1) == 2
    assert depth_1[7, 5] == pytest.approx(4.0, abs=2e-5) and depth_1[20, 30] == pytest.approx(12.5, abs=2e-5)
    info = messages["/camera/camera_info"][0][1]
    np.testing.assert_array_equal(info.k.reshape(3, 3), w.KITTI_RAW_P2[:, :3])

    (_, static), = messages["/tf_static"]
    by_child = {t.child_frame_id: t for t in static.transforms}
    assert by_child["velodyne"].header.frame_id == "camera_optical" and by_child["imu"].header.frame_id == "velodyne"
    K2 = w.KITTI_RAW_P2[:, :3]
    T_cam2_rect0 = np.eye(4)
    T_cam2_rect0[:3, 3] = np.linalg.solve(K2, w.KITTI_RAW_P2[:, 3])
    R_rect, T_cam0_velo = np.eye(4), np.eye(4)
    R_rect[:3, :3] = w.KITTI_RAW_R_RECT
    T_cam0_velo[:3, :3], T_cam0_velo[:3, 3] = w.KITTI_RAW_R_VELO, w.KITTI_RAW_T_VELO
    velodyne = by_child["velodyne"].transform
    np.testing.assert_allclose(matrix_from_pose(velodyne.translation, velodyne.rotation),
                               T_cam2_rect0 @ R_rect @ T_cam0_velo, atol=1e-6)  # calib files hold 7 digits
    imu = by_child["imu"].transform
    np.testing.assert_allclose([imu.translation.x, imu.translation.y, imu.translation.z], T_imu, atol=1e-12)

    back = back_from_bag(cli, bag, tmp_path / "frames", poses=False)
    assert len(back) == 4
    for frame, b in zip(reference.sequences[0], back):
        np.testing.assert_array_equal(b["rgb"], load_rgb(frame.image))
        np.testing.assert_array_equal(b["K"], w.KITTI_RAW_P2[:, :3])
        expected = velodyne_to_depth_map(read_velodyne_bin(frame.depth), projection, image_hw)
        # 4.0 m and 12.5 m are whole TUM quanta; the float32 scan's 2e-5 m error rounds away.
        np.testing.assert_array_equal(b["depth"], np.round(expected * 5000) / np.float32(5000))
