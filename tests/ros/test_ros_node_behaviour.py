"""priordepth_node's behaviour, node in this process with the real pipeline, talking over loopback to a test node in
a separate rclpy context: no backlog, reset service, compressed input, base frame and mount TF, run-time parameters,
stale frames, an exception inside the pipeline, and start-up refusal of bad parameters."""

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

    def send_and_wait(self, index: int, **kwargs) -> None:
        count = len(self.received["/priordepth/odometry"])
        self.send(index, **kwargs)
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
    odometry = harness.received["/priordepth/odometry"]
    # keep_pose_on_reinit (default): the trajectory continues where it was instead of jumping back to the origin.
    np.testing.assert_allclose(c.matrix_from_pose(odometry[2].pose.pose), c.matrix_from_pose(odometry[1].pose.pose),
                               atol=1e-9)
    assert harness.totals()["processed"] == 4 and harness.totals().get("rejected", 0) == 0


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
        T_camera0_camera = c.invert_transform(R_mount) @ T_odom_cam
        expected = T_base_camera @ T_camera0_camera @ c.invert_transform(T_base_camera)
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
    harness.send(2)
    assert harness.spin_until(lambda: harness.totals().get("stale") == 1, 10)
    assert len(harness.received["/priordepth/odometry"]) == 3


@pytest.mark.parametrize(("arguments", "message"), [
    (["-p", "backend:=tensorflow"], "parameter 'backend' must be one of: torch, onnxruntime, tensorrt"),
    (["-p", "checkpoint:=/nonexistent/model.pt"], "/nonexistent/model.pt"),
])
def test_bad_configuration_stops_the_node_at_start_with_a_clear_message(ros_domain, arguments, message):
    completed = subprocess.run([sys.executable, "-m", "priordepth_ros.node", "--ros-args", *arguments],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1
    assert "cannot start" in completed.stderr and message in completed.stderr
