"""The bags rosbag_tools writes, read by independent implementations: the ``mcap`` + ``mcap-ros2-support`` readers,
plain sqlite3 + rclpy's deserializer, and rclpy's serializer byte for byte; the built tf2_msgs matches Jazzy's."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from priordepth_core.geometry.se3 import quaternion_xyzw_from_rotation_np
from rosbag_tools import messages

IMAGE_RGB = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
K = np.array([[50.5, 0.0, 3.5], [0.0, 51.25, 2.5], [0.0, 0.0, 1.0]])
T_WORLD_CAM = np.array([[0.0, -1.0, 0.0, 1.5], [1.0, 0.0, 0.0, -0.25], [0.0, 0.0, 1.0, 2.0], [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def synthetic_bags(tmp_path_factory, synthetic_tum_sequence) -> dict[str, Path]:
    from rosbag_tools.__main__ import main

    root = tmp_path_factory.mktemp("interop")
    bags = {}
    for name, options in (("mcap", ["--storage", "mcap"]), ("sqlite3", ["--storage", "sqlite3"]),
                          ("mcap_zstd", ["--storage", "mcap", "--compress"])):
        bags[name] = root / f"bag_{name}"
        assert main(["synth2bag", "--sequence", str(synthetic_tum_sequence), "-o", str(bags[name]), *options,
                     "--no-progress"]) == 0
    return bags


def anyreader_messages(bag: Path) -> list[tuple[str, int, bytes]]:
    with AnyReader([bag]) as reader:
        return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]


def test_anyreader_reads_both_storages_identically(synthetic_bags):
    mcap_messages = anyreader_messages(synthetic_bags["mcap"])
    sqlite_messages = anyreader_messages(synthetic_bags["sqlite3"])
    assert len(mcap_messages) == 25  # 5 frames x (camera_info, image, depth, tf, odometry)
    assert sorted(mcap_messages) == sorted(sqlite_messages)
    with AnyReader([synthetic_bags["mcap"]]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts == {"/camera/camera_info": 5, "/camera/image": 5, "/ground_truth/depth": 5, "/tf": 5,
                      "/ground_truth/odometry": 5}


def test_compressed_mcap_holds_the_same_messages_in_fewer_bytes(synthetic_bags):
    mcap_reader = pytest.importorskip("mcap.reader")
    plain, compressed = synthetic_bags["mcap"], synthetic_bags["mcap_zstd"]
    assert anyreader_messages(compressed) == anyreader_messages(plain)
    (mcap_file,) = compressed.glob("*.mcap")
    with mcap_file.open("rb") as stream:
        reader = mcap_reader.make_reader(stream)
        assert {chunk.compression for chunk in reader.get_summary().chunk_indexes} == {"zstd"}
        raw = sorted((channel.topic, message.log_time, bytes(message.data))
                     for _, channel, message in reader.iter_messages())
    assert raw == sorted(anyreader_messages(plain))
    size = {name: sum(f.stat().st_size for f in bag.iterdir()) for name, bag in synthetic_bags.items()}
    assert size["mcap_zstd"] < 0.9 * size["mcap"]


def test_mcap_ros2_support_decodes_what_rosbags_wrote(synthetic_bags):
    mcap_reader = pytest.importorskip("mcap.reader")
    mcap_ros2_decoder = pytest.importorskip("mcap_ros2.decoder")
    expected = anyreader_messages(synthetic_bags["mcap"])
    with AnyReader([synthetic_bags["mcap"]]) as reader:
        typed = {(c.topic, t): reader.deserialize(raw, c.msgtype) for c, t, raw in reader.messages()}
    (mcap_file,) = synthetic_bags["mcap"].glob("*.mcap")
    decoded = []
    with mcap_file.open("rb") as stream:
        reader = mcap_reader.make_reader(stream, decoder_factories=[mcap_ros2_decoder.DecoderFactory()])
        assert reader.get_summary().statistics.message_count == 25
        for schema, channel, message, ros in reader.iter_decoded_messages():
            assert schema.encoding == "ros2msg" and channel.message_encoding == "cdr"
            decoded.append((channel.topic, message.log_time, bytes(message.data)))
            reference = typed[channel.topic, message.log_time]
            stamped, stamped_reference = (ros.transforms[0], reference.transforms[0]) if hasattr(ros, "transforms") \
                else (ros, reference)
            assert (stamped.header.stamp.sec, stamped.header.stamp.nanosec) == (
                stamped_reference.header.stamp.sec, stamped_reference.header.stamp.nanosec)
            if schema.name == "sensor_msgs/msg/Image":
                assert (ros.height, ros.width, ros.encoding, ros.step) == (reference.height, reference.width,
                                                                           reference.encoding, reference.step)
                assert bytes(ros.data) == bytes(reference.data)
            elif schema.name == "sensor_msgs/msg/CameraInfo":
                np.testing.assert_array_equal(ros.k, reference.k)
                np.testing.assert_array_equal(ros.p, reference.p)
            elif schema.name == "tf2_msgs/msg/TFMessage":
                (transform,) = ros.transforms
                assert (transform.header.frame_id, transform.child_frame_id) == ("world", "gt_camera")
                assert transform.transform.rotation.w == reference.transforms[0].transform.rotation.w
            elif schema.name == "nav_msgs/msg/Odometry":
                assert ros.pose.pose.position.x == reference.pose.pose.position.x
                assert ros.twist.twist.angular.z == reference.twist.twist.angular.z
    assert sorted(decoded) == sorted(expected)


def _rclpy_messages():
    pytest.importorskip("rclpy", reason="rclpy (the ros-jazzy wheels) is not installed")
    from rclpy.serialization import deserialize_message, serialize_message

    return serialize_message, deserialize_message


def test_sqlite3_bag_read_with_plain_sqlite_and_rclpy(synthetic_bags):
    _, deserialize_message = _rclpy_messages()
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo, Image

    (database,) = synthetic_bags["sqlite3"].glob("*.db3")
    connection = sqlite3.connect(database)
    topics = {row[0]: (row[1], row[2]) for row in connection.execute("SELECT id, name, type FROM topics")}
    rows = connection.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY timestamp, id").fetchall()
    connection.close()
    assert len(rows) == 25
    classes = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CameraInfo": CameraInfo,
               "nav_msgs/msg/Odometry": Odometry}
    for topic_id, timestamp, data in rows:
        name, msgtype = topics[topic_id]
        if msgtype not in classes:
            continue
        message = deserialize_message(bytes(data), classes[msgtype])
        assert message.header.stamp.sec * 10**9 + message.header.stamp.nanosec == timestamp
        if name == "/camera/image":
            assert (message.encoding, message.width, message.height) == ("rgb8", 64, 48)


def image_padding_offsets(cdr: bytes) -> set[int]:
    """Byte offsets of the alignment padding in a CDR-serialized sensor_msgs/Image (alignment counts from the end of
    the 4-byte encapsulation header)."""
    position, padding = 4, set()

    def align(size: int) -> None:
        nonlocal position
        gap = -(position - 4) % size
        padding.update(range(position, position + gap))
        position += gap

    def skip_string() -> None:
        nonlocal position
        align(4)
        (length,) = struct.unpack_from("<I", cdr, position)
        position += 4 + length

    position += 8  # header.stamp: int32 sec, uint32 nanosec
    skip_string()  # header.frame_id
    align(4)
    position += 8  # height, width
    skip_string()  # encoding
    position += 1  # is_bigendian
    align(4)
    position += 4  # step
    align(4)  # data: uint32 length, then bytes
    return padding


def test_image_cdr_equals_rclpy_serialize_message():
    serialize_message, deserialize_message = _rclpy_messages()
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    stamp_ns = 1_317_046_945_964_389_445
    header = Header(stamp=Time(sec=1_317_046_945, nanosec=964_389_445), frame_id="camera_optical")
    depth = np.linspace(0.0, 3.0, 48, dtype=np.float32).reshape(6, 8)
    with_nan = depth.copy()
    with_nan[depth == 0] = np.nan  # REP 118: no measurement
    # Padding: 1 byte after "camera_optical\0" (ends at 31), then after is_bigendian up to the 4-aligned step: two
    # bytes after "rgb8\0" (is_bigendian at 49), one after "32FC1\0" (at 50).
    cases = [
        (messages.image_rgb8(stamp_ns, "camera_optical", IMAGE_RGB),
         Image(header=header, height=6, width=8, encoding="rgb8", is_bigendian=0, step=24, data=IMAGE_RGB.tobytes()),
         {31, 50, 51}),
        (messages.image_depth_32fc1(stamp_ns, "camera_optical", depth),
         Image(header=header, height=6, width=8, encoding="32FC1", is_bigendian=0, step=32,
               data=with_nan.astype("<f4").tobytes()),
         {31, 51}),
    ]
    for ours, theirs, expected_padding in cases:
        ours_cdr, theirs_cdr = messages.serialize(ours, messages.IMAGE), serialize_message(theirs)
        assert len(ours_cdr) == len(theirs_cdr)
        padding = image_padding_offsets(theirs_cdr)
        assert padding == expected_padding
        # CDR leaves padding content unspecified and Fast-CDR does not clear it; every other byte must agree.
        differing = {i for i, (a, b) in enumerate(zip(ours_cdr, theirs_cdr)) if a != b}
        assert differing <= padding
        assert all(ours_cdr[i] == 0 for i in padding)
        assert ours_cdr[:4] == theirs_cdr[:4] == b"\x00\x01\x00\x00"  # CDR little-endian encapsulation
        assert deserialize_message(ours_cdr, Image) == theirs


def test_camera_info_and_tf_cdr_decode_in_rclpy_to_the_same_messages():
    serialize_message, deserialize_message = _rclpy_messages()
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Quaternion, TransformStamped, Vector3
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    stamp_ns = 1_317_046_945_964_389_445
    header = Header(stamp=Time(sec=1_317_046_945, nanosec=964_389_445), frame_id="camera_optical")
    theirs_info = CameraInfo(header=header, height=6, width=8, distortion_model="plumb_bob",
                             d=[0.1, -0.2, 0.0, 0.0, 0.05], k=K.ravel().tolist(), r=np.eye(3).ravel().tolist(),
                             p=np.hstack([K, np.zeros((3, 1))]).ravel().tolist())
    ours_info = messages.camera_info(stamp_ns, "camera_optical", K, (6, 8), (0.1, -0.2, 0.0, 0.0, 0.05))
    ours_cdr = messages.serialize(ours_info, messages.CAMERA_INFO)
    assert len(ours_cdr) == len(serialize_message(theirs_info))
    assert deserialize_message(ours_cdr, CameraInfo) == theirs_info

    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        pytest.skip("tf2_msgs is not built into this environment (make ros-interfaces)")
    q = quaternion_xyzw_from_rotation_np(T_WORLD_CAM[:3, :3])
    theirs_tf = TFMessage(transforms=[TransformStamped(header=Header(stamp=header.stamp, frame_id="world"),
                                                       child_frame_id="gt_camera")])
    theirs_tf.transforms[0].transform.translation = Vector3(x=1.5, y=-0.25, z=2.0)
    theirs_tf.transforms[0].transform.rotation = Quaternion(x=q[0], y=q[1], z=q[2], w=q[3])
    ours_tf = messages.tf_message([messages.transform_stamped(stamp_ns, "world", "gt_camera", T_WORLD_CAM)])
    ours_cdr = messages.serialize(ours_tf, messages.TF_MESSAGE)
    assert len(ours_cdr) == len(serialize_message(theirs_tf))
    assert deserialize_message(ours_cdr, TFMessage) == theirs_tf


def test_built_tf2_msgs_is_the_genuine_jazzy_type(monkeypatch):
    pytest.importorskip("rclpy", reason="rclpy (the ros-jazzy wheels) is not installed")
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        pytest.skip("tf2_msgs is not built into this environment (make ros-interfaces)")
    from ament_index_python.packages import get_package_share_directory

    if not os.environ.get("AMENT_PREFIX_PATH"):
        monkeypatch.setenv("AMENT_PREFIX_PATH", sys.prefix)  # `make ros-interfaces` installs into the venv
    description = json.loads((Path(get_package_share_directory("tf2_msgs")) / "msg" / "TFMessage.json").read_text())
    built_hash = next(entry["hash_string"] for entry in description["type_hashes"]
                      if entry["type_name"] == "tf2_msgs/msg/TFMessage")
    # rosbags ships the message definitions of the Jazzy release: an identical hash means an identical definition.
    assert built_hash == messages.TYPESTORE.hash_rihs01(messages.TF_MESSAGE)
    assert TFMessage.get_fields_and_field_types() == {"transforms": "sequence<geometry_msgs/TransformStamped>"}


def test_quaternion_is_ros_order_with_non_negative_w():
    half = np.sqrt(0.5)
    R_z90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 degrees about z
    np.testing.assert_allclose(quaternion_xyzw_from_rotation_np(R_z90), [0.0, 0.0, half, half], atol=1e-15)
    R_z270 = R_z90.T
    np.testing.assert_allclose(quaternion_xyzw_from_rotation_np(R_z270), [0.0, 0.0, -half, half], atol=1e-15)


def test_time_conversion_keeps_nanoseconds_of_epoch_stamps():
    assert messages.seconds_to_nanoseconds(1317046945.9643894) == pytest.approx(1317046945964389400, abs=300)
    stamp = messages.stamp(1_317_046_945_964_389_445)
    assert (stamp.sec, stamp.nanosec) == (1_317_046_945, 964_389_445)
    assert messages.stamp_to_nanoseconds(stamp) == 1_317_046_945_964_389_445
    with pytest.raises(ValueError, match="negative"):
        messages.stamp(-1)
