"""priordepth_ros.conversions: round trips of every conversion, and clear errors for every malformed message."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy", reason="rclpy (the ros-jazzy wheels) is not installed")

import cv2  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from scipy.linalg import expm  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from priordepth_core.geometry.se3 import invert_transform_np, skew_np  # noqa: E402
from priordepth_ros import conversions as c  # noqa: E402

HEADER = Header(stamp=Time(sec=12, nanosec=345), frame_id="camera_optical")


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)


def padded_image(pixels: np.ndarray, encoding: str, padding: int) -> Image:
    """An Image whose rows carry ``padding`` junk bytes after the pixels (as some drivers send them)."""
    height, width = pixels.shape[:2]
    row_bytes = pixels.reshape(height, -1)
    rows = np.concatenate([row_bytes, np.full((height, padding), 77, np.uint8)], axis=1)
    return Image(header=HEADER, height=height, width=width, encoding=encoding, step=rows.shape[1],
                 data=c._byte_array(rows))


@pytest.mark.parametrize("padding", [0, 5])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "rgba8", "bgra8"])
def test_image_to_rgb_decodes_every_supported_encoding(rgb, encoding, padding):
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    sources = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": grey,
               "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]),
               "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 9, np.uint8)])}
    expected = np.dstack([grey] * 3) if encoding == "mono8" else rgb
    out = c.image_to_rgb(padded_image(np.ascontiguousarray(sources[encoding]), encoding, padding))
    assert out.dtype == np.uint8 and out.shape == (7, 11, 3) and out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_rgb_image_round_trip(rgb, encoding):
    message = c.rgb_to_image(rgb, HEADER, encoding)
    assert (message.encoding, message.width, message.height, message.step) == (encoding, 11, 7, 33)
    assert message.header.stamp.nanosec == 345 and message.header.frame_id == "camera_optical"
    np.testing.assert_array_equal(c.image_to_rgb(message), rgb)


@pytest.mark.parametrize(("change", "error"), [
    ({"encoding": "yuv422"}, "unsupported image encoding 'yuv422'"),
    ({"encoding": "16UC1"}, "unsupported image encoding '16UC1'"),
    ({"width": 0, "height": 0, "step": 0}, r"empty image \(0x0\)"),
    ({"step": 30}, "image step 30 is smaller than width x 3 bytes"),
    ({"height": 8}, "image data has 231 bytes, expected step x height = 264"),
])
def test_malformed_images_raise_errors_naming_the_field(rgb, change, error):
    message = c.rgb_to_image(rgb, HEADER)
    for field, value in change.items():
        setattr(message, field, value)
    with pytest.raises(c.ConversionError, match=error):
        c.image_to_rgb(message)


@pytest.mark.parametrize(("extension", "exact"), [(".png", True), (".jpg", False)])
def test_compressed_image_decodes_png_exactly_and_jpeg_closely(extension, exact):
    x, y = np.meshgrid(np.linspace(0, 255, 64), np.linspace(0, 255, 48))
    image = np.stack([x, np.full_like(x, 90), y], axis=-1).astype(np.uint8)  # smooth, so JPEG stays close
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    message = CompressedImage(header=HEADER, format=f"rgb8; {extension[1:]} compressed bgr8",
                              data=c._byte_array(encoded))
    out = c.compressed_image_to_rgb(message)
    assert out.shape == image.shape
    if exact:
        np.testing.assert_array_equal(out, image)
    else:  # red and blue swapped would be off by about 85 on average
        assert np.abs(out.astype(int) - image).mean() < 3


def test_compressed_image_errors():
    with pytest.raises(c.ConversionError, match="empty CompressedImage"):
        c.compressed_image_to_rgb(CompressedImage(format="jpeg"))
    with pytest.raises(c.ConversionError, match="cannot decode CompressedImage of format 'jpeg' \\(4 bytes\\)"):
        c.compressed_image_to_rgb(CompressedImage(format="jpeg", data=b"\x01\x02\x03\x04"))
    with pytest.raises(c.ConversionError, match="compressed depth images are not colour images"):
        c.compressed_image_to_rgb(CompressedImage(format="16UC1; compressedDepth png", data=b"\x01"))


def test_depth_round_trip_keeps_nan_and_byte_order():
    depth = np.random.default_rng(1).uniform(0.1, 80.0, (5, 6)).astype(np.float32)
    depth[1, 2] = np.nan
    message = c.depth_to_image(depth, HEADER)
    assert (message.encoding, message.step, message.width, message.height) == ("32FC1", 24, 6, 5)
    assert message.is_bigendian == int(c.HOST_IS_BIG_ENDIAN)
    np.testing.assert_array_equal(c.image_to_depth(message), depth)  # NaN compares equal in array_equal positions
    assert np.isnan(c.image_to_depth(message)[1, 2])
    # The same values sent by a big-endian machine decode identically.
    swapped = Image(header=HEADER, height=5, width=6, encoding="32FC1", is_bigendian=1, step=24,
                    data=c._byte_array(depth.astype(">f4")))
    np.testing.assert_array_equal(c.image_to_depth(swapped), depth)
    with pytest.raises(c.ConversionError, match="must be 32FC1"):
        c.image_to_depth(c.rgb_to_image(np.zeros((2, 2, 3), np.uint8), HEADER))


def test_camera_info_intrinsics_from_k_or_p():
    K = np.array([[500.0, 0.0, 319.5], [0.0, 505.0, 239.5], [0.0, 0.0, 1.0]])
    info = c.camera_info_message(K, 640, 480, HEADER, distortion=np.array([0.1, -0.2, 0.0, 0.0, 0.0]))
    np.testing.assert_array_equal(c.camera_info_intrinsics(info), K)
    info.p = np.array([450.0, 0.0, 300.0, 0.0, 0.0, 455.0, 230.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(c.camera_info_intrinsics(info, use_projection=True),
                                  [[450.0, 0.0, 300.0], [0.0, 455.0, 230.0], [0.0, 0.0, 1.0]])
    copy = c.camera_info_with_header(info, Header(stamp=Time(sec=99), frame_id="x"))
    assert copy.header.stamp.sec == 99 and copy.width == 640 and list(copy.d) == list(info.d)
    np.testing.assert_array_equal(copy.k, info.k)


def test_uncalibrated_or_broken_camera_info_is_refused():
    with pytest.raises(c.ConversionError, match="not a calibrated pinhole camera"):
        c.camera_info_intrinsics(CameraInfo(width=640, height=480))  # a driver without calibration sends zeros
    info = c.camera_info_message(np.eye(3), 4, 4, HEADER)
    info.k[0] = np.nan
    with pytest.raises(c.ConversionError, match="K contains non-finite values"):
        c.camera_info_intrinsics(info)
    K = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
    with pytest.raises(c.ConversionError, match=r"no image size \(0x0\); the camera driver must fill width"):
        c.camera_info_intrinsics(c.camera_info_message(K, 0, 0, HEADER))
    with pytest.raises(c.ConversionError, match=r"principal point \(319.5, 239.5\) outside the 320x96 image"):
        c.camera_info_intrinsics(c.camera_info_message(K, 320, 96, HEADER))  # K of 640x480 sent with 320x96


def test_pointcloud2_round_trip():
    points = np.random.default_rng(2).normal(size=(40, 3)).astype(np.float32)
    scores = np.linspace(0, 1, 40, dtype=np.float32)
    cloud = c.points_to_pointcloud2(points, HEADER, scores)
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (1, 40, 16, 640) and cloud.is_dense
    array = c.pointcloud2_to_array(cloud)
    np.testing.assert_array_equal(np.stack([array["x"], array["y"], array["z"]], axis=1), points)
    np.testing.assert_array_equal(array["score"], scores)
    empty = c.points_to_pointcloud2(np.zeros((0, 3)), HEADER)
    assert empty.width == 0 and len(c.pointcloud2_to_array(empty)) == 0
    with pytest.raises(ValueError, match="3 scores for 40 points"):
        c.points_to_pointcloud2(points, HEADER, scores[:3])


def random_transform(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return c.transform_matrix(Rotation.random(random_state=seed).as_matrix(), rng.normal(size=3))


def test_pose_transform_and_quaternion_round_trips():
    for seed in range(5):
        T = random_transform(seed)
        np.testing.assert_allclose(c.matrix_from_pose(c.pose_from_matrix(T)), T, atol=1e-12)
        stamped = c.transform_stamped(T, HEADER.stamp, "odom", "camera")
        assert (stamped.header.frame_id, stamped.child_frame_id) == ("odom", "camera")
        np.testing.assert_allclose(c.matrix_from_transform(stamped.transform), T, atol=1e-12)
        q = stamped.transform.rotation
        assert q.w >= 0 and abs(np.linalg.norm([q.x, q.y, q.z, q.w]) - 1) < 1e-12
        np.testing.assert_allclose(invert_transform_np(T) @ T, np.eye(4), atol=1e-12)
    # ROS order (x, y, z, w): 90 degrees about z.
    half = np.sqrt(0.5)
    rotation = c.transform_stamped(c.transform_matrix(Rotation.from_euler("z", 90, degrees=True).as_matrix(),
                                                      np.zeros(3)), HEADER.stamp, "odom", "camera").transform.rotation
    np.testing.assert_allclose([rotation.x, rotation.y, rotation.z, rotation.w], [0, 0, half, half], atol=1e-12)


def test_twist_integrates_back_to_the_relative_pose():
    for seed in range(5):
        T = random_transform(seed)
        T[:3, :3] = Rotation.from_rotvec(Rotation.from_matrix(T[:3, :3]).as_rotvec() * 0.3).as_matrix()
        dt = 0.1
        twist = c.twist_from_relative_pose(T, dt)
        generator = np.zeros((4, 4))
        generator[:3, :3] = skew_np(twist[3:])
        generator[:3, 3] = twist[:3]
        np.testing.assert_allclose(expm(generator * dt), T, atol=1e-9)  # constant body twist over dt
    np.testing.assert_allclose(c.twist_from_relative_pose(c.transform_matrix(np.eye(3), [1.0, 2.0, 3.0]), 0.5),
                               [2, 4, 6, 0, 0, 0])
    assert not c.twist_from_relative_pose(np.eye(4), 0.0).any()


def test_covariance_rotation_and_odometry_message():
    covariance = np.diag([1.0, 2.0, 3.0, 0.1, 0.2, 0.3])
    R = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    rotated = c.rotate_covariance(covariance, R)
    np.testing.assert_allclose(np.diag(rotated), [2.0, 1.0, 3.0, 0.2, 0.1, 0.3], atol=1e-12)
    T = random_transform(7)
    twist = np.arange(6, dtype=float)
    message = c.odometry_message(T, rotated, twist, covariance * 2, HEADER.stamp, "odom", "base_link")
    assert (message.header.frame_id, message.child_frame_id) == ("odom", "base_link")
    np.testing.assert_allclose(c.matrix_from_pose(message.pose.pose), T, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(message.pose.covariance).reshape(6, 6), rotated)
    np.testing.assert_array_equal(np.asarray(message.twist.covariance).reshape(6, 6), covariance * 2)
    assert (message.twist.twist.linear.y, message.twist.twist.angular.z) == (1.0, 5.0)


def test_stamps_convert_exactly():
    stamp = Time(sec=1_700_000_000, nanosec=123_456_789)
    assert c.stamp_to_nanoseconds(stamp) == 1_700_000_000_123_456_789
    assert abs(c.stamp_to_seconds(stamp) - 1_700_000_000.123456789) < 1e-6


def test_camera_info_undistorter_rectifies_raw_images_to_the_camera_of_P():
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    info = c.camera_info_message(K, 320, 240, HEADER, distortion=np.array([-0.25, 0.07, 0.001, -0.0005, 0.0]))
    undistorter = c.camera_info_undistorter(info)
    assert not undistorter.is_identity and 0.9 < undistorter.valid_fraction <= 1.0
    np.testing.assert_array_equal(undistorter.rectified_K, K)  # P = [K | 0]
    corner = undistorter.undistort_points([[5.0, 5.0]])
    assert np.linalg.norm(corner - [5.0, 5.0]) > 5  # barrel: a corner pixel comes from further out
    # image_rect topics (use_projection) are rectified already: nothing to do.
    assert c.camera_info_undistorter(info, use_projection=True).is_identity
    assert c.camera_info_undistorter(c.camera_info_message(K, 320, 240, HEADER)).is_identity
    info.distortion_model = "kannala_brandt"
    with pytest.raises(c.ConversionError, match=r"unsupported lens distortion model 'kannala_brandt'.*equidistant"):
        c.camera_info_undistorter(info)
