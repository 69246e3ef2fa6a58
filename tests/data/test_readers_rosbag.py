"""rosbag2 reader: Image / CompressedImage + CameraInfo in mcap and sqlite3 bags, poses, bad topics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import check_common_sample, flat_image, frame_color, mean_color, trajectory
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from priordepth_core.data import DatasetError, FrameSamples, RosbagReader

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
HEIGHT, WIDTH = 24, 32
K_NATIVE = np.array([[20.0, 0.0, 15.5], [0.0, 21.0, 11.5], [0.0, 0.0, 1.0]])
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def header(stamp_ns: int):
    Header = TYPESTORE.types["std_msgs/msg/Header"]
    Time = TYPESTORE.types["builtin_interfaces/msg/Time"]
    return Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000), frame_id="camera")


def image_message(stamp_ns: int, rgb: np.ndarray, compressed: bool):
    if compressed:
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        return TYPESTORE.types["sensor_msgs/msg/CompressedImage"](header=header(stamp_ns), format="png",
                                                                  data=png.ravel())
    return TYPESTORE.types["sensor_msgs/msg/Image"](header=header(stamp_ns), height=rgb.shape[0], width=rgb.shape[1],
                                                    encoding="rgb8", is_bigendian=0, step=rgb.shape[1] * 3,
                                                    data=rgb.ravel())


def camera_info_message(stamp_ns: int, K: np.ndarray, height: int = HEIGHT, width: int = WIDTH):
    roi = TYPESTORE.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                              do_rectify=False)
    P = np.hstack([K, np.zeros((3, 1))])
    return TYPESTORE.types["sensor_msgs/msg/CameraInfo"](
        header=header(stamp_ns), height=height, width=width, distortion_model="plumb_bob", d=np.zeros(5),
        k=K.ravel().astype(np.float64), r=np.eye(3).ravel(), p=P.ravel(), binning_x=0, binning_y=0, roi=roi)


def pose_message(stamp_ns: int, T: np.ndarray):
    types = TYPESTORE.types
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    pose = types["geometry_msgs/msg/Pose"](
        position=types["geometry_msgs/msg/Point"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
        orientation=types["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
    return types["geometry_msgs/msg/PoseStamped"](header=header(stamp_ns), pose=pose)


def write_bag(path, storage: str, num_frames: int = 5, compressed: bool = False, poses: np.ndarray | None = None,
              info_size: tuple[int, int] = (HEIGHT, WIDTH)):
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    start = 1_700_000_000_000_000_000
    with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
        image = writer.add_connection("/camera/image_raw", image_type, typestore=TYPESTORE)
        info = writer.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=TYPESTORE)
        pose = None
        if poses is not None:
            pose = writer.add_connection("/camera/pose", "geometry_msgs/msg/PoseStamped", typestore=TYPESTORE)
        for i in range(num_frames):
            stamp = start + i * 50_000_000  # 20 Hz, header stamps 3 ms before reception
            msg = image_message(stamp - 3_000_000, flat_image(i, HEIGHT, WIDTH), compressed)
            writer.write(image, stamp, TYPESTORE.serialize_cdr(msg, image_type))
            K = K_NATIVE if i < 3 else K_NATIVE * np.array([[1.5, 1, 1], [1, 1.5, 1], [1, 1, 1]])
            writer.write(info, stamp + 1, TYPESTORE.serialize_cdr(camera_info_message(stamp - 3_000_000, K,
                                                                                      *info_size),
                                                                  "sensor_msgs/msg/CameraInfo"))
            if pose is not None:
                writer.write(pose, stamp + 2, TYPESTORE.serialize_cdr(pose_message(stamp - 1_000_000, poses[i]),
                                                                      "geometry_msgs/msg/PoseStamped"))
    return start


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "compressed"])
def test_frames_and_intrinsics_from_bag(tmp_path, storage, compressed):
    bag = tmp_path / f"bag_{storage}"
    start = write_bag(bag, storage, compressed=compressed)
    dataset = FrameSamples(RosbagReader(bag, "/camera/image_raw", "/camera/camera_info"), size_hw=(12, 16))
    assert len(dataset) == 3
    sample = dataset[0]
    check_common_sample(sample, (12, 16), 2, depth_hw=None, has_poses=False)
    assert sample["frame_index"] == 1 and sample["sequence"] == f"bag_{storage}:/camera/image_raw"
    assert sample["stamp"] == pytest.approx((start + 50_000_000 - 3_000_000) * 1e-9, abs=1e-6)
    np.testing.assert_allclose(mean_color(sample["image"]), frame_color(1), atol=0.01)
    np.testing.assert_allclose(mean_color(sample["context"][0]), frame_color(0), atol=0.01)
    np.testing.assert_allclose(mean_color(sample["context"][1]), frame_color(2), atol=0.01)
    torch.testing.assert_close(sample["K"], torch.tensor([[10.0, 0, 7.5], [0, 10.5, 5.5], [0, 0, 1]]))
    # From frame 3 on the CameraInfo changes: each frame takes the CameraInfo nearest in time.
    torch.testing.assert_close(dataset[2]["K"], torch.tensor([[15.0, 0, 7.5], [0, 15.75, 5.5], [0, 0, 1]]))
    cached = FrameSamples(RosbagReader(bag, "/camera/image_raw", "/camera/camera_info", cache_frames=True), (12, 16))
    torch.testing.assert_close(cached[1]["context"], dataset[1]["context"], rtol=0, atol=0)
    torch.testing.assert_close(cached[1]["context"], dataset[1]["context"], rtol=0, atol=0)  # served from cache


def test_poses_from_a_pose_topic(tmp_path):
    poses = trajectory(5, seed=4)
    write_bag(tmp_path / "bag", "mcap", poses=poses)
    reader = RosbagReader(tmp_path / "bag", "/camera/image_raw", "/camera/camera_info", pose_topic="/camera/pose")
    dataset = FrameSamples(reader, (12, 16))
    sample = dataset[1]
    check_common_sample(sample, (12, 16), 2, depth_hw=None, has_poses=True)
    np.testing.assert_allclose(sample["T_world_cam"].numpy(), poses[2], atol=1e-5)
    for k, i in enumerate((1, 3)):
        np.testing.assert_allclose(sample["T_context_target"][k].numpy(), np.linalg.inv(poses[i]) @ poses[2],
                                   atol=1e-5)
    with pytest.raises(DatasetError, match=r"no image on '/camera/image_raw' has a pose on '/camera/pose' within "
                                           r"0\.0005 s"):
        RosbagReader(tmp_path / "bag", "/camera/image_raw", "/camera/camera_info", pose_topic="/camera/pose",
                     max_pose_time_difference=0.0005)


def test_dataloader_workers_open_their_own_bag(tmp_path):
    write_bag(tmp_path / "bag", "sqlite3")
    dataset = FrameSamples(RosbagReader(tmp_path / "bag", "/camera/image_raw", "/camera/camera_info"), (12, 16))
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=1,
                                         multiprocessing_context="spawn")
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 3, 12, 16) and batch["frame_index"].tolist() == [1, 2, 3]


def test_bad_topics_and_bags(tmp_path):
    bag = tmp_path / "bag"
    write_bag(bag, "mcap")
    with pytest.raises(DatasetError, match=r"camera_info topic '/cam/info' is not in the bag; topics: "
                                           r"/camera/camera_info \(sensor_msgs/msg/CameraInfo\), /camera/image_raw"):
        RosbagReader(bag, "/camera/image_raw", "/cam/info")
    with pytest.raises(DatasetError, match=r"image topic '/camera/camera_info' has type sensor_msgs/msg/CameraInfo"):
        RosbagReader(bag, "/camera/camera_info", "/camera/camera_info")
    with pytest.raises(DatasetError, match=r"nope: rosbag2 does not exist"):
        RosbagReader(tmp_path / "nope", "/camera/image_raw", "/camera/camera_info")
    (tmp_path / "not_a_bag").mkdir()
    with pytest.raises(DatasetError, match=r"not_a_bag: cannot open rosbag2"):
        RosbagReader(tmp_path / "not_a_bag", "/camera/image_raw", "/camera/camera_info")

    mismatched = tmp_path / "mismatched"
    write_bag(mismatched, "sqlite3", info_size=(48, 64))
    with pytest.raises(DatasetError, match=r"image topic '/camera/image_raw' at bag time \d+ ns: image is 32x24 but "
                                           r"its CameraInfo is for 64x48"):
        RosbagReader(mismatched, "/camera/image_raw", "/camera/camera_info")


def test_image_size_change_mid_bag_is_refused_when_the_frame_loads(tmp_path):
    bag = tmp_path / "bag"
    start = 1_700_000_000_000_000_000
    with Writer(bag, version=9, storage_plugin=STORAGES["mcap"]) as writer:
        image = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=TYPESTORE)
        info = writer.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=TYPESTORE)
        for i in range(5):
            stamp = start + i * 50_000_000
            rgb = flat_image(i, *((30, 40) if i == 3 else (HEIGHT, WIDTH)))
            writer.write(image, stamp, TYPESTORE.serialize_cdr(image_message(stamp, rgb, False),
                                                               "sensor_msgs/msg/Image"))
            writer.write(info, stamp, TYPESTORE.serialize_cdr(camera_info_message(stamp, K_NATIVE),
                                                              "sensor_msgs/msg/CameraInfo"))
    dataset = FrameSamples(RosbagReader(bag, "/camera/image_raw", "/camera/camera_info"), (12, 16))
    dataset[0]
    with pytest.raises(DatasetError, match=rf"image topic '/camera/image_raw' at bag time {start + 150_000_000} ns: "
                                           r"image is 40x30 but its CameraInfo is for 32x24"):
        dataset[1]
