"""info: topics, types, counts, rates, duration, image sizes and encodings, as a table and as JSON."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Writer

from rosbag_tools import messages


@pytest.fixture(scope="module")
def bag(tmp_path_factory, synthetic_tum_sequence):
    from rosbag_tools.__main__ import main

    path = tmp_path_factory.mktemp("info") / "bag"
    assert main(["synth2bag", "--sequence", str(synthetic_tum_sequence), "-o", str(path), "--storage", "sqlite3",
                 "--no-progress"]) == 0
    return path


def test_info_json_describes_every_topic(cli, bag):
    status, out, err = cli("info", bag, "--json")
    assert status == 0, err
    info = json.loads(out)
    assert info["storage"] == "sqlite3" and info["message_count"] == 25
    assert info["size_bytes"] == sum(f.stat().st_size for f in bag.iterdir())
    assert info["start_s"] == 0.0 and info["duration_s"] == pytest.approx(0.133333, abs=1e-9)  # stamps 0 .. 4/30 s
    topics = {t["topic"]: t for t in info["topics"]}
    assert set(topics) == {"/camera/image", "/camera/camera_info", "/ground_truth/depth", "/tf",
                           "/ground_truth/odometry"}
    for topic in topics.values():
        assert topic["count"] == 5
        assert topic["rate_hz"] == pytest.approx(4 / 0.133333, rel=1e-6)
    image, depth = topics["/camera/image"], topics["/ground_truth/depth"]
    assert (image["msgtype"], image["image_width"], image["image_height"], image["encoding"]) == (
        "sensor_msgs/msg/Image", 64, 48, "rgb8")
    assert (depth["image_width"], depth["image_height"], depth["encoding"]) == (64, 48, "32FC1")
    assert topics["/tf"]["msgtype"] == "tf2_msgs/msg/TFMessage" and topics["/tf"]["encoding"] is None


def test_info_table_and_compressed_images(cli, tmp_path):
    path = tmp_path / "compressed"
    rgb = np.zeros((30, 40, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", rgb)
    assert ok
    with Writer(path, version=9) as writer:
        connection = writer.add_connection("/cam/image/compressed", messages.COMPRESSED_IMAGE,
                                           typestore=messages.TYPESTORE)
        for i in range(3):
            message = messages.TYPESTORE.types[messages.COMPRESSED_IMAGE](
                header=messages.header(i * 50_000_000, "cam"), format="png", data=png.reshape(-1))
            writer.write(connection, i * 50_000_000, messages.serialize(message, messages.COMPRESSED_IMAGE))
    status, out, err = cli("info", path)
    assert status == 0, err
    row = next(line for line in out.splitlines() if line.startswith("/cam/image/compressed"))
    assert row.split() == ["/cam/image/compressed", "sensor_msgs/msg/CompressedImage", "3", "20.00", "40x30",
                           "compressed", "png"]
    assert "storage:   sqlite3" in out and "(0.100 s)" in out  # rosbags writes sqlite3 by default
