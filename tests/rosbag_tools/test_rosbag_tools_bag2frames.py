"""bag2frames on hand-written bags: every supported encoding, compressed images, decimation, resizing with K scaled,
depth units and layouts, topic auto-detection."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from priordepth_core.data import TumRgbdReader
from priordepth_core.data.frames import load_depth_png, load_rgb
from priordepth_core.data.sample import resize_image
from priordepth_core.data.tum_rgbd import read_intrinsics_file
from rosbag_tools import messages
from rosbag_tools.bag_to_frames import decode_depth

HEIGHT, WIDTH = 12, 16
K = np.array([[20.0, 0.0, 7.5], [0.0, 21.0, 5.5], [0.0, 0.0, 1.0]])
BASE_NS = 1_700_000_000_000_000_000


def textured_rgb(index: int = 0) -> np.ndarray:
    rng = np.random.default_rng(index)
    return rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def raw_image(stamp_ns: int, encoding: str, pixels: np.ndarray, frame_id: str = "cam"):
    height, width = pixels.shape[:2]
    return messages.TYPESTORE.types[messages.IMAGE](
        header=messages.header(stamp_ns, frame_id), height=height, width=width, encoding=encoding, is_bigendian=0,
        step=pixels.nbytes // height, data=np.ascontiguousarray(pixels).view(np.uint8).reshape(-1))


def compressed_image(stamp_ns: int, rgb: np.ndarray, extension: str):
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return messages.TYPESTORE.types[messages.COMPRESSED_IMAGE](
        header=messages.header(stamp_ns, "cam"), format=extension.lstrip("."), data=encoded.reshape(-1))


def write_bag(path: Path, topics: dict[str, tuple[str, list[tuple[int, object]]]],
              storage: StoragePlugin = StoragePlugin.MCAP) -> Path:
    """topics: name -> (msgtype, [(stamp_ns, message)]); messages are written in stamp order."""
    with Writer(path, version=9, storage_plugin=storage) as writer:
        connections = {name: writer.add_connection(name, msgtype, typestore=messages.TYPESTORE)
                       for name, (msgtype, _) in topics.items()}
        timeline = sorted((stamp, name, message) for name, (_, entries) in topics.items()
                          for stamp, message in entries)
        for stamp, name, message in timeline:
            writer.write(connections[name], stamp, messages.serialize(message, topics[name][0]))
    return path


def camera_bag(path: Path, images: list, stamps: list[int], image_topic: str = "/cam/image_raw",
               msgtype: str = messages.IMAGE, extra: dict | None = None) -> Path:
    infos = [(s, messages.camera_info(s, "cam", K, (HEIGHT, WIDTH))) for s in stamps]
    topics = {image_topic: (msgtype, list(zip(stamps, images))), "/cam/camera_info": (messages.CAMERA_INFO, infos)}
    return write_bag(path, {**topics, **(extra or {})})


def extracted(cli, bag: Path, out: Path, *options) -> list[np.ndarray]:
    status, _, err = cli("bag2frames", bag, "-o", out, "--no-progress", *options)
    assert status == 0, err
    return [load_rgb(f.image) for f in TumRgbdReader(out).sequences[0]]


def stamps_at(rate_hz: float, count: int) -> list[int]:
    return [BASE_NS + round(i * 1e9 / rate_hz) for i in range(count)]


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_raw_encodings_decode_to_the_same_rgb(cli, tmp_path, encoding):
    rgb = [textured_rgb(i) for i in range(3)]
    if encoding == "rgb8":
        pixels, expected = rgb, rgb
    elif encoding == "bgr8":
        pixels, expected = [np.ascontiguousarray(x[..., ::-1]) for x in rgb], rgb
    else:
        pixels = [x[..., 0] for x in rgb]
        expected = [np.repeat(x[..., None], 3, axis=2) for x in pixels]
    stamps = stamps_at(10, 3)
    bag = camera_bag(tmp_path / "bag", [raw_image(s, encoding, p) for s, p in zip(stamps, pixels)], stamps)
    for got, want in zip(extracted(cli, bag, tmp_path / "frames"), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_mosaics_are_debayered_with_the_right_pattern(cli, tmp_path, pattern):
    colour = {"r": 200, "g": 90, "b": 30}
    mosaic = np.empty((HEIGHT, WIDTH), dtype=np.uint8)
    for (dy, dx), channel in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern):
        mosaic[dy::2, dx::2] = colour[channel]
    stamps = stamps_at(10, 2)
    bag = camera_bag(tmp_path / "bag", [raw_image(s, f"bayer_{pattern}8", mosaic) for s in stamps], stamps)
    for rgb in extracted(cli, bag, tmp_path / "frames"):
        # A flat colour debayers to itself everywhere only when R and B sites are where the encoding says.
        np.testing.assert_array_equal(rgb, np.broadcast_to([200, 90, 30], rgb.shape))


def test_compressed_images_png_exact_and_jpeg_close(cli, tmp_path):
    rgb = [textured_rgb(i) for i in range(3)]
    stamps = stamps_at(10, 3)
    bag = camera_bag(tmp_path / "png", [compressed_image(s, x, ".png") for s, x in zip(stamps, rgb)], stamps,
                     image_topic="/cam/image_raw/compressed", msgtype=messages.COMPRESSED_IMAGE)
    for got, want in zip(extracted(cli, bag, tmp_path / "png_frames"), rgb, strict=True):
        np.testing.assert_array_equal(got, want)

    grey = textured_rgb(7)[..., 1]
    ok, grey_png = cv2.imencode(".png", grey)  # a single-channel PNG, as mono cameras' compressed topics carry
    assert ok
    grey_messages = [messages.TYPESTORE.types[messages.COMPRESSED_IMAGE](
        header=messages.header(s, "cam"), format="mono8; png compressed", data=grey_png.reshape(-1)) for s in stamps]
    bag = camera_bag(tmp_path / "mono_png", grey_messages, stamps, image_topic="/cam/image_raw/compressed",
                     msgtype=messages.COMPRESSED_IMAGE)
    for got in extracted(cli, bag, tmp_path / "mono_frames"):
        np.testing.assert_array_equal(got, np.repeat(grey[..., None], 3, axis=2))

    smooth = np.broadcast_to(np.linspace(20, 230, WIDTH, dtype=np.uint8)[None, :, None], (HEIGHT, WIDTH, 3)).copy()
    bag = camera_bag(tmp_path / "jpg", [compressed_image(s, smooth, ".jpg") for s in stamps], stamps,
                     image_topic="/cam/image_raw/compressed", msgtype=messages.COMPRESSED_IMAGE)
    for got in extracted(cli, bag, tmp_path / "jpg_frames"):
        assert np.abs(got.astype(int) - smooth).mean() < 3.0


def test_decimation_every_and_max_rate(cli, tmp_path):
    stamps = stamps_at(30, 12)
    bag = camera_bag(tmp_path / "bag", [raw_image(s, "rgb8", textured_rgb(i)) for i, s in enumerate(stamps)], stamps)
    every = extracted(cli, bag, tmp_path / "every", "--every", 4)
    assert len(every) == 3
    for got, i in zip(every, (0, 4, 8)):
        np.testing.assert_array_equal(got, textured_rgb(i))
    # 30 Hz stamps rounded to nanoseconds, kept at 10 Hz: every third frame, none dropped by round-off.
    rate = extracted(cli, bag, tmp_path / "rate", "--max-rate", 10)
    assert len(rate) == 4
    for got, i in zip(rate, (0, 3, 6, 9)):
        np.testing.assert_array_equal(got, textured_rgb(i))
    stamps_written = [float(line.split()[0]) for line in (tmp_path / "rate" / "rgb.txt").read_text().splitlines()
                      if not line.startswith("#")]
    np.testing.assert_allclose(np.diff(stamps_written), 0.1, atol=1e-6)


def test_resizing_scales_k_and_depth_by_nearest_neighbour(cli, tmp_path):
    stamps = stamps_at(10, 3)
    rgb = [textured_rgb(i) for i in range(3)]
    depth = np.tile(np.arange(WIDTH, dtype=np.float32) * 0.25 + 1.0, (HEIGHT, 1))  # 1.0 .. 4.75 m by column
    depth_messages = [(s, messages.image_depth_32fc1(s, "cam", depth)) for s in stamps]
    bag = camera_bag(tmp_path / "bag", [raw_image(s, "rgb8", x) for s, x in zip(stamps, rgb)], stamps,
                     extra={"/cam/depth": (messages.IMAGE, depth_messages)})
    got = extracted(cli, bag, tmp_path / "frames", "--size", "8x6", "--depth-topic", "/cam/depth")
    for image, original in zip(got, rgb, strict=True):
        np.testing.assert_array_equal(image, resize_image(original, (6, 8)))
    K_written, size_hw = read_intrinsics_file(tmp_path / "frames" / "intrinsics.txt")
    assert size_hw == (6, 8)
    # Half size with pixel centres at integers: f -> f / 2, c -> (c + 0.5) / 2 - 0.5.
    np.testing.assert_allclose(K_written, [[10.0, 0.0, 3.5], [0.0, 10.5, 2.5], [0.0, 0.0, 1.0]], atol=1e-12)
    depth_files = sorted((tmp_path / "frames" / "depth").iterdir())
    assert len(depth_files) == 3
    # Nearest neighbour at pixel centres: output column j samples input column 2 j + 1 (never an average).
    np.testing.assert_array_equal(load_depth_png(depth_files[0], 5000.0), depth[:6, 1::2])


def test_depth_units_row_padding_and_byte_order():
    millimetres = np.array([[0, 1500, 65535], [250, 4000, 10]], dtype=np.uint16)
    padded = np.zeros((2, 4), dtype=np.uint16)
    padded[:, :3] = millimetres.byteswap()  # big-endian, each row padded by one unused value
    message = messages.TYPESTORE.types[messages.IMAGE](
        header=messages.header(0, "cam"), height=2, width=3, encoding="16UC1", is_bigendian=1, step=8,
        data=padded.view(np.uint8).reshape(-1))
    np.testing.assert_allclose(decode_depth(message, "/depth", Path("bag")), millimetres / 1000.0, rtol=1e-7)

    metres = np.array([[np.nan, 1.25, -1.0], [np.inf, 2.5, 0.0]], dtype=np.float32)
    depth = decode_depth(messages.TYPESTORE.types[messages.IMAGE](
        header=messages.header(0, "cam"), height=2, width=3, encoding="32FC1", is_bigendian=0, step=12,
        data=metres.view(np.uint8).reshape(-1)), "/depth", Path("bag"))
    np.testing.assert_array_equal(depth, [[0.0, 1.25, 0.0], [0.0, 2.5, 0.0]])  # non-finite / negative -> invalid


def test_image_and_camera_info_topics_are_found_automatically(cli, tmp_path):
    stamps = stamps_at(10, 3)
    depth_messages = [(s, messages.image_depth_32fc1(s, "cam", np.ones((HEIGHT, WIDTH), np.float32))) for s in stamps]
    bag = camera_bag(tmp_path / "bag", [raw_image(s, "rgb8", textured_rgb(i)) for i, s in enumerate(stamps)], stamps,
                     image_topic="/cam/image_rect", extra={"/cam/depth/image_rect": (messages.IMAGE, depth_messages)})
    assert len(extracted(cli, bag, tmp_path / "frames")) == 3
    assert "from /cam/camera_info" in (tmp_path / "frames" / "intrinsics.txt").read_text()


def test_poses_from_pose_stamped_are_written_for_each_frame(cli, tmp_path):
    stamps = stamps_at(10, 4)
    T = np.eye(4)
    poses = []
    for i, s in enumerate(stamps):
        T = T.copy()
        T[:3, 3] = [0.1 * i, 0.0, 0.02 * i]
        transform = messages.transform_stamped(s + 3_000_000, "world", "cam", T)  # 3 ms after the image
        pose = messages.TYPESTORE.types["geometry_msgs/msg/Pose"](
            position=messages.TYPESTORE.types["geometry_msgs/msg/Point"](
                x=transform.transform.translation.x, y=transform.transform.translation.y,
                z=transform.transform.translation.z),
            orientation=transform.transform.rotation)
        poses.append((s + 3_000_000, messages.TYPESTORE.types[messages.POSE_STAMPED](header=transform.header,
                                                                                     pose=pose)))
    bag = camera_bag(tmp_path / "bag", [raw_image(s, "rgb8", textured_rgb(i)) for i, s in enumerate(stamps)], stamps,
                     extra={"/cam/pose": (messages.POSE_STAMPED, poses)})
    status, _, err = cli("bag2frames", bag, "-o", tmp_path / "frames", "--pose-topic", "/cam/pose", "--no-progress")
    assert status == 0, err
    frames = TumRgbdReader(tmp_path / "frames").sequences[0]
    assert len(frames) == 4
    for i, frame in enumerate(frames):
        np.testing.assert_allclose(frame.T_world_cam[:3, 3], [0.1 * i, 0.0, 0.02 * i], atol=1e-12)
        assert frame.stamp == pytest.approx(stamps[i] * 1e-9, abs=1e-6)  # written at the image's stamp
