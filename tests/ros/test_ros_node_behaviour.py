"""priordepth_node's behaviour, node in this process with the real pipeline, talking over loopback to a test node in
a separate rclpy context: no backlog, reset service, compressed input, base frame and mount TF, run-time parameters,
stale frames, an exception inside the pipeline, repeated, older and looping stamps, refused CameraInfo, image size
changes, warnings throttled per cause, and start-up refusal of bad parameters."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros
rclpy = pytest.importorskip("rclpy", reason="rclpy (the ros-jazzy wheels) is not installed")
pytest.importorskip("std_srvs.srv", reason="std_srvs (ros-jazzy-std-srvs) is not installed")
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs is not built into this environment (make ros-interfaces)")

import cv2  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from priordepth_core.geometry.se3 import invert_transform_np  # noqa: E402
from priordepth_ros import conversions as c  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 320, 96
K = np.array([[180.0, 0.0, 159.5], [0.0, 180.0, 47.5], [0.0, 0.0, 1.0]])


def textured_frame(index: int) -> np.ndarray:
    """A smooth random texture panning 3 px per frame: trackable keypoints without rendering."""
    rng = np.random.default_rng(5)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT + 8, WIDTH + 200, 3), dtype=np.uint8), (5, 5), 1.5)
    return np.ascontiguousarray(texture[4:4 + HEIGHT, 3 * index:3 * index + WIDTH])


def stamp(index: int) -> Time:
    return Time(sec=100 + index // 10, nanosec=(index % 10) * 100_000_000)


class LogRecorder:
    """Stands in for the node's logger: records (severity, text) and passes every line on to the real logger."""

    def __init__(self, logger):
        self.logger = logger
        self.lines: list[tuple[str, str]] = []

    # One call site per severity, as rclpy requires.
    def info(self, text: str, **kwargs) -> bool:
        self.lines.append(("info", text))
        return self.logger.info(text, **kwargs)

    def warning(self, text: str, **kwargs) -> bool:
        self.lines.append(("warning", text))
        return self.logger.warning(text, **kwargs)

    def error(self, text: str, **kwargs) -> bool:
        self.lines.append(("error", text))
        return self.logger.error(text, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.logger, name)

    def containing(self, part: str, severity: str = "warning") -> list[str]:
        return [text for level, text in self.lines if level == severity and part in text]


class Harness:
    """The node under test in one context (spun in a thread), a test node publishing inputs and recording outputs in
    another."""

    def __init__(self, domain: int, overrides: dict):
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from nav_msgs.msg import Path as PathMessage
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from tf2_msgs.msg import TFMessage

        from priordepth_ros.node import PriorDepthNode

        self.node_context, self.test_context = rclpy.Context(), rclpy.Context()
        rclpy.init(context=self.node_context, domain_id=domain)
        rclpy.init(context=self.test_context, domain_id=domain)
        self.node = PriorDepthNode(context=self.node_context, parameter_overrides=[
            Parameter(name, value=value) for name, value in {"num_threads": 1, "diagnostics_period_s": 0.2,
                                                             "path_publish_period_s": 0.0, **overrides}.items()])
        self.logs = LogRecorder(self.node.get_logger())
        self.node.get_logger = lambda: self.logs
        self.node_executor = rclpy.executors.SingleThreadedExecutor(context=self.node_context)
        self.node_executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.node_executor.spin, daemon=True)
        self.spinner.start()

        self.client = rclpy.create_node("behaviour_test", context=self.test_context)
        self.received: dict[str, list] = defaultdict(list)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        transient = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                               durability=rclpy.qos.DurabilityPolicy.TRANSIENT_LOCAL)
        for topic, kind, qos in (("/priordepth/depth", Image, reliable), ("/priordepth/odometry", Odometry, reliable),
                                 ("/priordepth/path", PathMessage, reliable), ("/tf", TFMessage, reliable),
                                 ("/tf_static", TFMessage, transient), ("/diagnostics", DiagnosticArray, reliable)):
            self.client.create_subscription(kind, topic, lambda m, t=topic: self.received[t].append(m), qos)
        image_type = CompressedImage if overrides.get("image_transport") == "compressed" else Image
        self.image_publisher = self.client.create_publisher(image_type, "image", reliable)
        self.info_publisher = self.client.create_publisher(CameraInfo, "camera_info", reliable)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.test_context)
        self.executor.add_node(self.client)
        assert self.spin_until(lambda: self.image_publisher.get_subscription_count() > 0
                               and self.client.count_publishers("/priordepth/depth") > 0, 20)

    def spin_until(self, done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done():
            self.executor.spin_once(timeout_sec=0.01)
        return done()

    def send(self, index: int, compressed: bool = False, frame_id: str = "camera_optical",
             rgb: np.ndarray | None = None, intrinsics: np.ndarray = K) -> None:
        header = Header(stamp=stamp(index), frame_id=frame_id)
        rgb = textured_frame(index) if rgb is None else rgb
        self.info_publisher.publish(c.camera_info_message(intrinsics, rgb.shape[1], rgb.shape[0], header))
        if compressed:
            from sensor_msgs.msg import CompressedImage

            _, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            self.image_publisher.publish(CompressedImage(header=header, format="jpeg", data=c._byte_array(jpeg)))
        else:
            self.image_publisher.publish(c.rgb_to_image(rgb, header))

    def send_image(self, index: int, frame_id: str = "camera_optical") -> None:
        """An image without a CameraInfo of its own."""
        self.image_publisher.publish(c.rgb_to_image(textured_frame(index), Header(stamp=stamp(index),
                                                                                    frame_id=frame_id)))

    def send_and_wait(self, index: int, image_only: bool = False, **kwargs) -> None:
        count = len(self.received["/priordepth/odometry"])
        self.send_image(index) if image_only else self.send(index, **kwargs)
        assert self.spin_until(lambda: len(self.received["/priordepth/odometry"]) > count, 30), \
            self.node.statistics.last_problem

    def totals(self) -> dict[str, int]:
        return self.node.statistics.totals()

    def close(self) -> None:
        if not self.node_context.ok():
            return
        self.node.stop()
        self.node_executor.shutdown()
        self.node.destroy_node()
        self.client.destroy_node()
        rclpy.shutdown(context=self.node_context)
        rclpy.shutdown(context=self.test_context)


@pytest.fixture
def harness_factory(ros_domain):
    harnesses = []

    def make(**overrides) -> Harness:
        harnesses.append(Harness(ros_domain, overrides))
        return harnesses[-1]

    yield make
    for harness in harnesses:
        harness.close()


def test_a_burst_of_frames_never_builds_a_backlog(harness_factory):
    harness = harness_factory()
    harness.send_and_wait(0)
    for index in range(1, 13):  # much faster than the pipeline runs
        harness.send(index)
        harness.spin_until(lambda: False, 0.005)
    assert harness.spin_until(lambda: any(c.stamp_to_nanoseconds(m.header.stamp) ==
                                          c.stamp_to_nanoseconds(stamp(12))
                                          for m in harness.received["/priordepth/odometry"]), 30)
    harness.spin_until(lambda: False, 0.5)
    totals = harness.totals()
    processed = [c.stamp_to_nanoseconds(m.header.stamp) for m in harness.received["/priordepth/odometry"]]
    assert processed[-1] == c.stamp_to_nanoseconds(stamp(12))  # the newest frame, last
    assert totals["superseded"] >= 6 and totals["processed"] + totals["superseded"] == 13
    assert totals["processed"] == len(processed) <= 7


def test_pipeline_exception_is_logged_and_the_node_keeps_processing(harness_factory):
    harness = harness_factory()
    original = harness.node.pipeline.process
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise RuntimeError("simulated CUDA out of memory")
        return original(*args, **kwargs)

    harness.node.pipeline.process = failing_once
    harness.send_and_wait(0)
    harness.send(1)
    assert harness.spin_until(lambda: harness.totals().get("errors") == 1, 30)
    harness.send_and_wait(2)
    assert len(harness.received["/priordepth/odometry"]) == 2  # nothing published for the failed frame
    assert "RuntimeError: simulated CUDA out of memory" in harness.node.statistics.last_problem
    assert harness.spin_until(lambda: any(kv.key == "pipeline errors" and kv.value == "1"
                                          for m in harness.received["/diagnostics"] for kv in m.status[0].values), 5)


def test_bad_messages_are_rejected_and_the_next_good_frame_is_processed(harness_factory):
    from sensor_msgs.msg import Image

    harness = harness_factory()
    harness.send_and_wait(0)
    bad = [Image(header=Header(stamp=stamp(1), frame_id="camera_optical"), width=WIDTH, height=HEIGHT,
                 encoding="yuv422", step=2 * WIDTH, data=bytes(2 * WIDTH * HEIGHT)),
           Image(header=Header(stamp=stamp(2), frame_id="camera_optical"), encoding="rgb8"),  # 0x0
           Image(header=Header(stamp=stamp(3), frame_id="camera_optical"), width=WIDTH, height=HEIGHT,
                 encoding="rgb8", step=3 * WIDTH, data=bytes(10))]
    for message in bad:
        harness.image_publisher.publish(message)
    assert harness.spin_until(lambda: harness.totals().get("rejected") == 3, 10)
    harness.image_publisher.publish(c.rgb_to_image(textured_frame(4), Header(stamp=stamp(4), frame_id="other")))
    assert harness.spin_until(lambda: harness.totals().get("rejected") == 4, 10)  # no CameraInfo for "other"
    assert "no CameraInfo for frame 'other'" in harness.node.statistics.last_problem
    harness.send_and_wait(5)
    assert [c.stamp_to_nanoseconds(m.header.stamp) for m in harness.received["/priordepth/odometry"]] == \
        [c.stamp_to_nanoseconds(stamp(0)), c.stamp_to_nanoseconds(stamp(5))]


def test_reset_service_restarts_odometry_and_path(harness_factory):
    from std_srvs.srv import Trigger

    harness = harness_factory()
    for index in range(4):
        harness.send_and_wait(index)
    paths = harness.received["/priordepth/path"]
    assert harness.spin_until(lambda: len(paths) == 4, 5) and len(paths[-1].poses) == 4
    client = harness.client.create_client(Trigger, "/priordepth/reset")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(Trigger.Request())
    assert harness.spin_until(future.done, 10) and future.result().success
    harness.spin_until(lambda: False, 0.5)  # the worker applies the reset
    harness.send_and_wait(10)
    last = harness.received["/priordepth/odometry"][-1]
    np.testing.assert_allclose(c.matrix_from_pose(last.pose.pose)[:3, 3], 0.0, atol=1e-12)
    assert harness.spin_until(lambda: len(paths) == 5, 5) and len(paths[-1].poses) == 1


def test_lost_tracking_reports_a_huge_covariance_and_a_warning(harness_factory):
    harness = harness_factory()
    harness.send_and_wait(0)
    harness.send_and_wait(1)
    harness.send_and_wait(2, rgb=np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8))  # lens cap: no texture at all
    odometry = harness.received["/priordepth/odometry"]
    tracked, lost = (np.asarray(m.pose.covariance).reshape(6, 6) for m in odometry[1:])
    assert np.diag(tracked).max() < 1.0 and np.diag(lost).min() >= 1e3  # LOST_VARIANCE, as rtabmap does
    np.testing.assert_allclose(c.matrix_from_pose(odometry[2].pose.pose), c.matrix_from_pose(odometry[1].pose.pose),
                               atol=1e-9)  # the pose is held
    assert harness.spin_until(lambda: any(m.status[0].message.endswith("tracking lost")
                                          for m in harness.received["/diagnostics"]), 5), \
        [m.status[0].message for m in harness.received["/diagnostics"]]


def test_image_size_change_restarts_tracking_at_the_new_size(harness_factory):
    harness = harness_factory()
    harness.send_and_wait(0)
    harness.send_and_wait(1)
    small = cv2.resize(textured_frame(2), (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_AREA)
    K_small = K.copy()
    K_small[:2] = K[:2] / 2
    harness.send_and_wait(2, rgb=small, intrinsics=K_small)
    harness.send_and_wait(3, rgb=cv2.resize(textured_frame(3), (WIDTH // 2, HEIGHT // 2)), intrinsics=K_small)
    depth = harness.received["/priordepth/depth"]
    assert harness.spin_until(lambda: len(depth) == 4, 5)
    assert [(m.width, m.height) for m in depth] == [(WIDTH, HEIGHT)] * 2 + [(WIDTH // 2, HEIGHT // 2)] * 2
    # One warning per change, naming both sizes; frames of an unchanged size warn nothing.
    assert harness.spin_until(lambda: len(harness.logs.containing("changed from 320x96 to 160x48")) == 1, 5), \
        harness.logs.lines
    assert "tracking re-initialised" in harness.logs.containing("changed from 320x96 to 160x48")[0]
    harness.send_and_wait(4)
    # The node logs after publishing the frame's outputs: give its thread the time to get there on a loaded machine.
    assert harness.spin_until(lambda: len(harness.logs.containing("changed from 160x48 to 320x96")) == 1, 5), \
        harness.logs.lines
    assert len(harness.logs.containing("image size")) == 2
    odometry = harness.received["/priordepth/odometry"]
    # keep_pose_on_reinit (default): the trajectory continues where it was instead of jumping back to the origin.
    np.testing.assert_allclose(c.matrix_from_pose(odometry[2].pose.pose), c.matrix_from_pose(odometry[1].pose.pose),
                               atol=1e-9)
    assert harness.spin_until(lambda: harness.totals()["processed"] == 5, 5)
    assert harness.totals().get("rejected", 0) == 0


def test_repeated_and_slightly_older_stamps_are_dropped_with_one_warning_per_cause(harness_factory):
    harness = harness_factory()
    harness.send_and_wait(10)
    for index in (10, 10, 9):  # the same stamp twice more, then one 100 ms older
        harness.send(index)
        harness.spin_until(lambda: False, 1.0)  # time to process it, were it let through
    harness.send_and_wait(11)
    harness.spin_until(lambda: False, 0.5)
    odometry = harness.received["/priordepth/odometry"]
    assert [c.stamp_to_nanoseconds(m.header.stamp) for m in odometry] == \
        [c.stamp_to_nanoseconds(stamp(10)), c.stamp_to_nanoseconds(stamp(11))]
    assert len(harness.received["/priordepth/depth"]) == 2
    assert harness.totals()["out_of_order"] == 3 and harness.spin_until(lambda: harness.totals()["processed"] == 2, 5)
    repeated = harness.logs.containing("repeats the stamp of the previous image; frame dropped")
    older = harness.logs.containing("is 100 ms older than the previous image; frame dropped")
    assert len(repeated) == 1 and len(older) == 1, harness.logs.lines  # two causes, each warned once
    assert harness.logs.containing("jumped back") == []


def test_a_bag_loop_restarts_odometry_and_path_and_reports_it_on_diagnostics(harness_factory):
    harness = harness_factory()
    for index in range(20, 24):  # 102.0 .. 102.3 s
        harness.send_and_wait(index)
    paths = harness.received["/priordepth/path"]
    assert harness.spin_until(lambda: len(paths) == 4, 5) and len(paths[-1].poses) == 4
    harness.send_and_wait(0)  # 100.0 s: the bag starts over
    harness.send_and_wait(1)
    odometry = harness.received["/priordepth/odometry"]
    assert [c.stamp_to_nanoseconds(m.header.stamp) for m in odometry[-2:]] == \
        [c.stamp_to_nanoseconds(stamp(0)), c.stamp_to_nanoseconds(stamp(1))]
    np.testing.assert_allclose(c.matrix_from_pose(odometry[-2].pose.pose), c.matrix_from_pose(odometry[0].pose.pose),
                               atol=1e-12)  # where the first trajectory started
    assert np.linalg.norm(c.matrix_from_pose(odometry[-4].pose.pose)[:3, 3]) > 0  # the first trajectory moved
    assert harness.spin_until(lambda: len(paths) == 6, 5) and [len(p.poses) for p in paths[-2:]] == [1, 2]
    jumps = harness.logs.containing("image stamps jumped back by 2.300 s (from 102.300 s to 100.000 s)")
    assert len(jumps) == 1 and "odometry and path restart at the identity" in jumps[0], harness.logs.lines

    def reset_reported(message) -> bool:
        status = message.status[0]
        values = {kv.key: kv.value for kv in status.values}
        return (values.get("odometry resets") == "1" and "jumped back by 2.300 s" in values["last odometry reset"]
                and status.message.startswith("odometry reset: image stamps jumped back"))

    assert harness.spin_until(lambda: any(map(reset_reported, harness.received["/diagnostics"])), 5), \
        [m.status[0].message for m in harness.received["/diagnostics"]]
    assert harness.spin_until(lambda: harness.totals()["processed"] == 6, 5)
    assert harness.totals().get("out_of_order", 0) == 0


def test_bad_camera_info_is_refused_and_the_last_good_one_is_used(harness_factory):
    harness = harness_factory()
    used_K = []
    original = harness.node.pipeline.process

    def recording(image, K, stamp_s):
        used_K.append(np.array(K))
        return original(image, K, stamp_s)

    harness.node.pipeline.process = recording
    harness.send_and_wait(0)
    harness.send_and_wait(1)
    header = Header(stamp=stamp(2), frame_id="camera_optical")

    def info(width: int = WIDTH, height: int = HEIGHT, **entries: float):
        message = c.camera_info_message(K, width, height, header)
        for index, value in entries.items():  # k0 = fx, k2 = cx, k4 = fy
            message.k[int(index[1:])] = value
        return message

    bad = [(info(width=0, height=0), "CameraInfo has no image size (0x0)"),
           (info(k0=0.0), "is not a calibrated pinhole camera (fx=0.0"),
           (info(k0=np.nan), "CameraInfo K contains non-finite values"),
           (info(k2=900.0), "puts the principal point (900, 47.5) outside the 320x96 image")]
    for count, (message, problem) in enumerate(bad, start=1):
        harness.info_publisher.publish(message)
        assert harness.spin_until(lambda n=count: harness.totals().get("camera_info_refused") == n, 10), problem
        harness.send_and_wait(count + 1, image_only=True)
        warnings = harness.logs.containing(problem)
        assert len(warnings) == 1, (problem, harness.logs.lines)  # each cause has its own line
        assert warnings[0].startswith("CameraInfo of frame 'camera_optical' refused: ")
        assert warnings[0].endswith("keeping the last good one (320x96, stamped 100.100 s)")
    # A good CameraInfo of another resolution does not fit this image: the last one that does is used, with a warning.
    harness.info_publisher.publish(c.camera_info_message(K * [[2], [2], [1]], 2 * WIDTH, 2 * HEIGHT, header))
    harness.spin_until(lambda: False, 1.0)
    harness.send_and_wait(6, image_only=True)
    assert len(harness.logs.containing("the latest CameraInfo of frame 'camera_optical' is for 640x192 images but "
                                       "the image is 320x96; using the last one for 320x96")) == 1
    assert len(used_K) == 7 and all(np.array_equal(used, K) for used in used_K)
    assert harness.spin_until(lambda: harness.totals()["processed"] == 7, 5)
    assert harness.totals().get("rejected", 0) == 0


def test_a_camera_whose_only_camera_info_was_refused_is_skipped_with_the_reason(harness_factory):
    harness = harness_factory()
    harness.info_publisher.publish(c.camera_info_message(np.zeros((3, 3)), WIDTH, HEIGHT,
                                                         Header(stamp=stamp(0), frame_id="camera_optical")))
    assert harness.spin_until(lambda: harness.totals().get("camera_info_refused") == 1, 10)
    harness.send_image(0)
    assert harness.spin_until(lambda: harness.totals().get("rejected") == 1, 10)
    assert harness.node.statistics.last_problem == (
        "no usable CameraInfo for frame 'camera_optical': the last one was refused (CameraInfo K is not a calibrated "
        "pinhole camera (fx=0.0, fy=0.0, [2, 2]=0.0); is the camera calibrated?)")
    assert len(harness.logs.containing("images of this camera are skipped until a good one arrives")) == 1


def test_different_problems_are_warned_separately_and_repeats_are_folded(harness_factory):
    from sensor_msgs.msg import Image

    harness = harness_factory()

    def yuv(index: int) -> Image:
        return Image(header=Header(stamp=stamp(index), frame_id="camera_optical"), width=WIDTH, height=HEIGHT,
                     encoding="yuv422", step=2 * WIDTH, data=bytes(2 * WIDTH * HEIGHT))

    def truncated(index: int) -> Image:
        return Image(header=Header(stamp=stamp(index), frame_id="camera_optical"), width=WIDTH, height=HEIGHT,
                     encoding="rgb8", step=3 * WIDTH, data=bytes(10))

    for message in (yuv(1), yuv(2), truncated(3), truncated(4), yuv(5)):
        harness.image_publisher.publish(message)
    assert harness.spin_until(lambda: harness.totals().get("rejected") == 5, 10)
    encoding = harness.logs.containing("unsupported image encoding 'yuv422'")
    size = harness.logs.containing("image data has 10 bytes, expected step x height = 92160")
    assert len(encoding) == 1 and len(size) == 1, harness.logs.lines


def test_cause_of_a_problem_ignores_numbers_only():
    from priordepth_ros.node import cause_of

    assert cause_of("frame stamped 100.300 is 2.5 s old") == cause_of("frame stamped 101.000 is 12 s old")
    assert cause_of("image data has 10 bytes") != cause_of("unsupported image encoding 'yuv422'")
    assert cause_of("fx=0.0, fy=-1e-3") == cause_of("fx=1.5, fy=2")


def test_compressed_input(harness_factory):
    harness = harness_factory(image_transport="compressed")
    harness.send_and_wait(0, compressed=True)
    depth = harness.received["/priordepth/depth"]
    assert harness.spin_until(lambda: len(depth) == 1, 5)
    assert (depth[0].width, depth[0].height, depth[0].encoding) == (WIDTH, HEIGHT, "32FC1")


def test_base_frame_odometry_and_camera_mount_tf(harness_factory):
    # The same three frames, first without a base frame (odom -> camera), then with one (odom -> base_link).
    camera_only = harness_factory()
    for index in range(3):
        camera_only.send_and_wait(index)
    T_odom_camera = [c.matrix_from_pose(m.pose.pose) for m in camera_only.received["/priordepth/odometry"]]
    camera_only.close()

    mount_xyz = [0.3, 0.0, 1.2]
    harness = harness_factory(base_frame="base_link", publish_camera_mount_tf=True,
                              **{"camera_mount.xyz": mount_xyz})
    for index in range(3):
        harness.send_and_wait(index)
    assert harness.spin_until(lambda: len(harness.received["/tf_static"]) == 1
                              and len(harness.received["/tf"]) == 3, 5)
    static = harness.received["/tf_static"][0].transforms[0]
    assert (static.header.frame_id, static.child_frame_id) == ("base_link", "camera_optical")
    T_base_camera = c.matrix_from_transform(static.transform)
    np.testing.assert_allclose(T_base_camera[:3, 3], mount_xyz)
    # Optical z (forward) is the base's x, optical x (right) is the base's -y (REP 103).
    np.testing.assert_allclose(T_base_camera[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(T_base_camera[:3, :3] @ [1, 0, 0], [0, -1, 0], atol=1e-12)
    odometry = harness.received["/priordepth/odometry"]
    assert all((m.header.frame_id, m.child_frame_id) == ("odom", "base_link") for m in odometry)
    tf = [t for m in harness.received["/tf"] for t in m.transforms]
    assert [(t.header.frame_id, t.child_frame_id) for t in tf] == [("odom", "base_link")] * 3
    # REP 105: odom is where the base started; the base moves as the rigidly mounted camera does:
    # T_odom_base = T_base_camera T_camera0_camera T_camera_base, with T_camera0_camera = R_mount^-1 T_odom_camera.
    R_mount = c.transform_matrix(T_base_camera[:3, :3], np.zeros(3))
    for message, T_odom_cam in zip(odometry, T_odom_camera):
        T_camera0_camera = invert_transform_np(R_mount) @ T_odom_cam
        expected = T_base_camera @ T_camera0_camera @ invert_transform_np(T_base_camera)
        np.testing.assert_allclose(c.matrix_from_pose(message.pose.pose), expected, atol=1e-6)
    np.testing.assert_allclose(c.matrix_from_pose(odometry[0].pose.pose), np.eye(4), atol=1e-12)


def test_run_time_parameter_changes_and_stale_frames(harness_factory):
    harness = harness_factory()
    harness.send_and_wait(0)
    assert harness.spin_until(lambda: len(harness.received["/priordepth/depth"]) == 1, 5)
    result = harness.node.set_parameters([Parameter("publish.depth", value=False)])[0]
    assert result.successful
    harness.send_and_wait(1)
    harness.spin_until(lambda: False, 0.3)
    assert len(harness.received["/priordepth/depth"]) == 1 and len(harness.received["/priordepth/odometry"]) == 2
    assert harness.node.set_parameters([Parameter("path_max_length", value=1)])[0].successful
    harness.send_and_wait(3)
    paths = harness.received["/priordepth/path"]
    assert harness.spin_until(lambda: len(paths) == 3, 5) and [len(p.poses) for p in paths] == [1, 2, 1]
    refused = harness.node.set_parameters([Parameter("image_transport", value="compressed")])[0]
    assert not refused.successful  # read-only
    # Stamps of 100 s are decades old on the node's wall clock.
    assert harness.node.set_parameters([Parameter("max_input_age_s", value=1.0)])[0].successful
    harness.send(4)
    assert harness.spin_until(lambda: harness.totals().get("stale") == 1, 10)
    assert len(harness.received["/priordepth/odometry"]) == 3


@pytest.mark.parametrize(("arguments", "message"), [
    (["-p", "backend:=tensorflow"], "parameter 'backend' must be one of: torch, onnxruntime, openvino, tensorrt"),
    (["-p", "checkpoint:=/nonexistent/model.pt"], "/nonexistent/model.pt"),
])
def test_bad_configuration_stops_the_node_at_start_with_a_clear_message(ros_domain, arguments, message):
    completed = subprocess.run([sys.executable, "-m", "priordepth_ros.node", "--ros-args", *arguments],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1
    assert "cannot start" in completed.stderr and message in completed.stderr
