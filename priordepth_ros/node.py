"""``priordepth_node``: live depth, keypoint matches, odometry and TF from one camera (rclpy).

Run: ``ros2 run priordepth_ros priordepth_node --ros-args --params-file config/priordepth.yaml -r image:=... -r
camera_info:=...`` or ``python -m priordepth_ros.node --ros-args ...``. Topics, parameters and QoS are listed in
README's "ROS 2 node" section; names live in :mod:`priordepth_ros.topics`, parameters in
:mod:`priordepth_ros.parameters`.

Threads: the executor runs the subscriptions, the reset service and the diagnostics timer; a processing thread takes
the newest image from a one-slot buffer (:mod:`priordepth_ros.latest_frame`), pairs it with the latest CameraInfo of
its frame id, runs ``Pipeline.process`` and publishes. Images arriving meanwhile replace the waiting one, so there is
never a backlog. A painting thread draws the visualisation images (colourised depth, matches) of the newest
processed frame, only while someone subscribes to them, so pictures never delay depth, odometry and TF.

Robustness: a bad message (unsupported encoding, empty or inconsistent image, missing or mismatched CameraInfo) or an
exception in the pipeline skips that frame with a throttled log line and a diagnostics count; nothing is published
for it and the node keeps running. Log lines are throttled per cause, so one repeating problem never hides another.
A CameraInfo whose K cannot describe its image (no size, fx or fy not positive or not finite, principal point outside
the image, an unsupported distortion model) is refused and the last good one of that camera stays in use.

Lens distortion: a CameraInfo with non-zero ``d`` (plumb_bob, rational_polynomial or equidistant) makes the node
rectify each image before the pipeline (OpenCV maps built once per camera, :mod:`priordepth_core.geometry.distortion`)
to the camera of ``P`` (as ``image_proc`` does); depth, keypoints and pictures are then in the rectified image, and
``~/depth/camera_info`` describes it (K = P, no distortion). With ``use_rectified_projection`` the input is taken as
already rectified. Image stamps must increase: a repeated or
slightly older stamp drops the frame; a jump back of more than STAMP_JUMP_BACK_TOLERANCE_S (a looping bag, a
restarted source) restarts odometry and path at the identity and reports the reset on /diagnostics. A change of
image size is warned about once per change; the pipeline re-initialises tracking at the new size.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from priordepth_core.geometry.distortion import Undistorter, UndistorterCache
from priordepth_core.geometry.se3 import invert_transform_np, rotation_from_quaternion_xyzw_np
from priordepth_core.inference import LOST_VARIANCE, BackendUnavailableError, FrameResult, Pipeline

from . import qos, topics
from .conversions import (
    ConversionError,
    camera_info_message,
    camera_info_undistorter,
    camera_info_with_header,
    check_image_layout,
    compressed_image_to_rgb,
    depth_to_image,
    image_to_rgb,
    odometry_message,
    points_to_pointcloud2,
    pose_stamped,
    rgb_to_image,
    rotate_covariance,
    stamp_to_nanoseconds,
    stamp_to_seconds,
    transform_matrix,
    transform_stamped,
    twist_from_relative_pose,
)
from .diagnostics import NodeStatistics, diagnostic_status
from .latest_frame import LatestFrameSlot
from .overlays import colorize_depth, draw_match_tracks
from .parameters import (
    NodeSettings,
    ParameterError,
    check_value,
    declare_parameters,
    node_settings_from_values,
    parameter_specs,
    pipeline_config_from_values,
)

# A problem repeating every frame is logged at most once per this many seconds (with a count of the repeats).
LOG_THROTTLE_S = 5.0
# How long an image whose camera has sent no CameraInfo yet waits for one before it is skipped: a driver publishes
# both together, and the image callback may run first.
FIRST_CAMERA_INFO_WAIT_S = 0.2
# Reordered delivery and clock corrections move stamps back by a few frames at most; a looping bag or a restarted
# source jumps back by its length. Within the tolerance the older frame is dropped, beyond it odometry restarts.
STAMP_JUMP_BACK_TOLERANCE_S = 0.5


def cause_of(problem: str) -> str:
    """The throttle key of a logged problem: its text with the numbers taken out, so that one problem repeating with
    other stamps, sizes or counts shares a key, and two different problems never do."""
    return re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", problem)


@dataclass
class _Frame:
    message: Image | CompressedImage
    received: float  # time.perf_counter() at arrival


@dataclass
class _Pictures:
    """What the painting thread needs to draw one frame's visualisation images."""

    result: FrameResult
    rgb: np.ndarray
    header: Header
    colored: bool
    matches: bool


@dataclass
class _CameraInfoEntry:
    """A CameraInfo whose K fits its image size, and the rectification of its images (K is the rectified one)."""

    message: CameraInfo
    K: np.ndarray
    undistorter: Undistorter

    @property
    def size(self) -> tuple[int, int]:
        return self.message.width, self.message.height


class PriorDepthNode(Node):
    """The node; see the module docstring. Raises ParameterError (bad parameters) or the pipeline's load errors."""

    def __init__(self, node_name: str = topics.NODE_NAME, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        values = declare_parameters(self)
        self.settings: NodeSettings = node_settings_from_values(values)
        config = pipeline_config_from_values(values)
        self.pipeline = Pipeline(config, self.settings.checkpoint or None)
        self.get_logger().info(
            f"pipeline ready: {self.pipeline.checkpoint.name}, backend {config.backend} on {config.device} "
            f"({self.pipeline.network_precision()}), "
            f"network input {self.pipeline.input_size[1]}x{self.pipeline.input_size[0]}, scale {config.scale_mode}")

        colorize_depth(np.ones((2, 2), dtype=np.float32))  # builds the colour table now, not on the first frame
        self.statistics = NodeStatistics()
        self._slot: LatestFrameSlot[_Frame] = LatestFrameSlot()
        # Good CameraInfo per camera frame and image size (width, height), the newest last: a camera that changes
        # resolution keeps one per size, and a CameraInfo refused or made for another size displaces nothing.
        self._camera_infos: dict[str, dict[tuple[int, int], _CameraInfoEntry]] = {}
        self._camera_info_refusals: dict[str, str] = {}  # why the newest CameraInfo of a frame was refused
        self._camera_info_lock = threading.Lock()
        # Notified on every CameraInfo stored or refused: a camera's first image may be handed to the processing
        # thread before the CameraInfo sent with it has been stored (their callbacks race).
        self._camera_info_changed = threading.Condition(self._camera_info_lock)
        self._undistorters = UndistorterCache()  # rectification maps, built once per camera
        self._drift_warned: set[str] = set()
        self._mount_published: set[str] = set()
        self._log_times: dict[str, tuple[float, int]] = {}
        self._log_lock = threading.Lock()
        self._reset_requested = threading.Event()
        self._path: deque[object] = deque(maxlen=self.settings.path_max_length)
        self._previous_stamp_ns: int | None = None  # of the last frame processed
        self._newest_stamp_ns: int | None = None  # of the last frame put in the slot
        self._image_size: tuple[int, int] | None = None  # (width, height) of the last frame processed
        self._path_published_at = -np.inf
        self._previous_state = ""
        self._hardware_id = self.settings.camera_frame  # the camera frame of the latest image
        self._mount = self._camera_mount(self.settings)

        compressed = self.settings.image_transport == "compressed"
        image_type = CompressedImage if compressed else Image
        self.create_subscription(image_type, topics.IMAGE, self._on_image, qos.SENSOR_INPUT)
        self.create_subscription(CameraInfo, topics.CAMERA_INFO, self._on_camera_info, qos.SENSOR_INPUT)
        self._depth_publisher = self.create_publisher(Image, topics.DEPTH, qos.OUTPUT)
        self._depth_info_publisher = self.create_publisher(CameraInfo, topics.DEPTH_CAMERA_INFO, qos.OUTPUT)
        self._colored_publisher = self.create_publisher(Image, topics.DEPTH_COLORED, qos.OUTPUT)
        self._matches_publisher = self.create_publisher(Image, topics.MATCHES, qos.OUTPUT)
        self._keypoints_publisher = self.create_publisher(PointCloud2, topics.KEYPOINTS, qos.OUTPUT)
        self._odometry_publisher = self.create_publisher(Odometry, topics.ODOMETRY, qos.OUTPUT)
        self._path_publisher = self.create_publisher(Path, topics.PATH, qos.OUTPUT)
        self._tf_publisher = self.create_publisher(TFMessage, topics.TF, qos.TF)
        self._tf_static_publisher = (self.create_publisher(TFMessage, topics.TF_STATIC, qos.TF_STATIC)
                                     if self.settings.publish_camera_mount_tf else None)
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, qos.DIAGNOSTICS)
        self.create_service(Trigger, topics.RESET_SERVICE, self._on_reset)
        # The steady clock keeps diagnostics coming when use_sim_time is set and no /clock is published.
        self.create_timer(self.settings.diagnostics_period_s, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._image_topic = self.resolve_topic_name(topics.IMAGE)
        self._pictures: LatestFrameSlot[_Pictures] = LatestFrameSlot()
        self._worker = threading.Thread(target=self._work, name="priordepth_processing", daemon=True)
        self._painter = threading.Thread(target=self._paint, name="priordepth_painting", daemon=True)
        self._worker.start()
        self._painter.start()
        self.get_logger().info(f"waiting for {image_type.__name__} on {self._image_topic} and CameraInfo on "
                               f"{self.resolve_topic_name(topics.CAMERA_INFO)}")

    # ---------------------------------------------------------------------------------------------- settings
    @staticmethod
    def _camera_mount(settings: NodeSettings) -> np.ndarray:
        """T_base_camera of the settings (translation ignored without a base frame: it only orients odom)."""
        R = rotation_from_quaternion_xyzw_np(np.asarray(settings.camera_mount_quaternion_xyzw))
        t = np.asarray(settings.camera_mount_xyz) if settings.base_frame else np.zeros(3)
        return transform_matrix(R, t)

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Validate run-time changes (rclpy has already refused read-only ones and range violations)."""
        specs = parameter_specs()
        values = {}
        try:
            for parameter in parameters:
                if parameter.name in specs:
                    values[parameter.name] = check_value(specs[parameter.name], parameter.value)
            current = {name: self.get_parameter(name).value for name in specs}
            settings = node_settings_from_values({**current, **values})
        except ParameterError as error:
            return SetParametersResult(successful=False, reason=str(error))
        self.settings = settings  # the processing thread reads it once per frame
        return SetParametersResult(successful=True)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._reset_requested.set()
        self.statistics.odometry_reset("reset service called")
        self._slot.clear()
        response.success = True
        response.message = "tracking restarts at the identity with the next frame; path cleared"
        self.get_logger().info("reset requested: " + response.message)
        return response

    # ----------------------------------------------------------------------------------------------- logging
    def _log_throttled(self, text: str, level: str = "warning", cause: str = "") -> None:
        """Log ``text`` unless the same problem was logged less than LOG_THROTTLE_S ago; the problem is ``cause``,
        by default :func:`cause_of` the text."""
        key = cause or cause_of(text)
        now = time.monotonic()
        with self._log_lock:
            last, suppressed = self._log_times.get(key, (-np.inf, 0))
            if now - last < LOG_THROTTLE_S:
                self._log_times[key] = (last, suppressed + 1)
                return
            self._log_times[key] = (now, 0)
        if suppressed:
            text += f" ({suppressed} more like this in the last {now - last:.0f} s)"
        # One call site per severity: rclpy refuses a call site whose severity changes between calls.
        if level == "info":
            self.get_logger().info(text)
        elif level == "error":
            self.get_logger().error(text)
        else:
            self.get_logger().warning(text)

    def _reject(self, problem: str) -> None:
        self.statistics.rejected(problem)
        self._log_throttled(problem + "; frame skipped")

    @staticmethod
    def _stamp_problem(stamp_ns: int, previous_ns: int | None) -> tuple[str, str]:
        """(cause, text) when a frame stamped ``stamp_ns`` must be dropped after one stamped ``previous_ns``;
        ("", "") when it is newer, or jumped back by more than STAMP_JUMP_BACK_TOLERANCE_S (odometry restarts)."""
        if previous_ns is None or stamp_ns > previous_ns:
            return "", ""
        stamp = stamp_ns * 1e-9
        if stamp_ns == previous_ns:
            return "stamp_repeated", (f"image stamped {stamp:.3f} s repeats the stamp of the previous image; frame "
                                      "dropped (a duplicated message, or a driver that does not stamp each frame "
                                      "with its capture time)")
        back_s = (previous_ns - stamp_ns) * 1e-9
        if back_s <= STAMP_JUMP_BACK_TOLERANCE_S:
            return "stamp_older", (f"image stamped {stamp:.3f} s is {back_s * 1e3:.0f} ms older than the previous "
                                   f"image; frame dropped (out of order; a jump back of more than "
                                   f"{STAMP_JUMP_BACK_TOLERANCE_S} s restarts odometry instead)")
        return "", ""

    def _drop_for_stamp(self, cause: str, problem: str) -> None:
        self.statistics.out_of_order(problem)
        self._log_throttled(problem, cause=cause)

    # ------------------------------------------------------------------------------------------------ inputs
    def _on_camera_info(self, message: CameraInfo) -> None:
        frame_id = message.header.frame_id or self.settings.camera_frame
        try:
            undistorter = camera_info_undistorter(message, self.settings.use_rectified_projection, self._undistorters)
        except ConversionError as error:
            with self._camera_info_lock:
                self._camera_info_refusals[frame_id] = str(error)
                kept = list(self._camera_infos.get(frame_id, {}).values())
                self._camera_info_changed.notify_all()
            problem = f"CameraInfo of frame {frame_id!r} refused: {error}"
            self.statistics.camera_info_refused(problem)
            if kept:
                width, height = kept[-1].size
                self._log_throttled(f"{problem}; keeping the last good one ({width}x{height}, stamped "
                                    f"{stamp_to_seconds(kept[-1].message.header.stamp):.3f} s)")
            else:
                self._log_throttled(f"{problem}; images of this camera are skipped until a good one arrives")
            return
        entry = _CameraInfoEntry(message, undistorter.rectified_K, undistorter)
        with self._camera_info_lock:
            self._camera_info_refusals.pop(frame_id, None)
            sizes = self._camera_infos.setdefault(frame_id, {})
            sizes.pop(entry.size, None)  # re-inserted: the newest last
            sizes[entry.size] = entry
            self._camera_info_changed.notify_all()

    def _on_image(self, message: Image | CompressedImage) -> None:
        self.statistics.received()
        if isinstance(message, Image):
            try:
                check_image_layout(message)  # a malformed message must not displace a good frame that waits
            except ConversionError as error:
                self._reject(f"image on {self._image_topic}: {error}")
                return
        # Nor must a repeated or older frame; the worker judges again against the last frame processed.
        stamp_ns = stamp_to_nanoseconds(message.header.stamp)
        cause, problem = self._stamp_problem(stamp_ns, self._newest_stamp_ns)
        if cause:
            self._drop_for_stamp(cause, problem)
            return
        self._newest_stamp_ns = stamp_ns
        if self._slot.put(_Frame(message, time.perf_counter())):
            self.statistics.superseded()

    # ------------------------------------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._slot.closed:
            frame = self._slot.take(timeout=0.2)
            if self._reset_requested.is_set():
                self._reset_requested.clear()
                self._restart_odometry()
                continue  # the frame taken may predate the reset request
            if frame is None:
                continue
            try:
                self._process(frame)
            except Exception as error:  # a bad frame must never stop the node
                problem = f"pipeline error on the frame stamped {stamp_to_seconds(frame.message.header.stamp):.3f}: " \
                          f"{type(error).__name__}: {error}"
                self.statistics.failed(problem)
                self._log_throttled(problem, level="error")

    def _restart_odometry(self) -> None:
        """Processing thread: forget the trajectory; the next frame starts a new one at the identity."""
        self.pipeline.reset()
        self._path.clear()
        self._previous_stamp_ns = None

    def stop(self) -> None:
        """End the processing thread (waits for the frame in progress)."""
        self._slot.close()
        self._pictures.close()
        self._worker.join(timeout=30.0)
        self._painter.join(timeout=30.0)

    def _camera_infos_of(self, frame_id: str,
                         wait_s: float = 0.0) -> tuple[dict[tuple[int, int], _CameraInfoEntry], str]:
        """The good CameraInfo of a frame per image size (newest last) and why the newest one was refused ("").

        With ``wait_s`` > 0, a frame with neither waits up to that long for one (processing thread only)."""
        with self._camera_info_changed:
            self._camera_info_changed.wait_for(
                lambda: frame_id in self._camera_infos or frame_id in self._camera_info_refusals, timeout=wait_s)
            return dict(self._camera_infos.get(frame_id, {})), self._camera_info_refusals.get(frame_id, "")

    def _known_camera_frames(self) -> list[str]:
        with self._camera_info_lock:
            return sorted(self._camera_infos)

    def _process(self, frame: _Frame) -> None:
        settings = self.settings
        message = frame.message
        frame_id = message.header.frame_id or settings.camera_frame
        header = Header(stamp=message.header.stamp, frame_id=frame_id)
        self._hardware_id = frame_id
        stamp_ns = stamp_to_nanoseconds(header.stamp)
        stamp = stamp_to_seconds(header.stamp)

        infos, refusal = self._camera_infos_of(frame_id, wait_s=FIRST_CAMERA_INFO_WAIT_S)
        if not infos:
            if refusal:
                self._reject(f"no usable CameraInfo for frame {frame_id!r}: the last one was refused ({refusal})")
                return
            known = self._known_camera_frames()
            self._reject(f"no CameraInfo for frame {frame_id!r} received yet on "
                         f"{self.resolve_topic_name(topics.CAMERA_INFO)}"
                         + (f" (CameraInfo came for {', '.join(map(repr, known))})" if known else ""))
            return
        if settings.max_input_age_s > 0:
            age = (self.get_clock().now().nanoseconds - stamp_ns) * 1e-9
            if age > settings.max_input_age_s:
                self.statistics.stale()
                self._log_throttled(f"frame stamped {stamp:.3f} is {age:.3f} s old (max_input_age_s "
                                    f"{settings.max_input_age_s}); skipped", cause="stale")
                return

        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            rgb = image_to_rgb(message) if isinstance(message, Image) else compressed_image_to_rgb(message)
        except ConversionError as error:
            self._reject(f"image on {self._image_topic}: {error}")
            return
        height, width = rgb.shape[:2]
        info = infos.get((width, height))
        newest = list(infos.values())[-1]
        if info is None:
            sizes = ", ".join(f"{w}x{h}" for w, h in infos)
            self._reject(f"CameraInfo of frame {frame_id!r} is for {sizes} images but the image is {width}x{height}; "
                         "the camera must publish the CameraInfo of the resolution it streams")
            return
        if info is not newest:
            self._log_throttled(f"the latest CameraInfo of frame {frame_id!r} is for {newest.size[0]}x"
                                f"{newest.size[1]} images but the image is {width}x{height}; using the last one for "
                                f"{width}x{height} (stamped {stamp_to_seconds(info.message.header.stamp):.3f} s)")
        drift = abs(stamp_to_nanoseconds(info.message.header.stamp) - stamp_ns) * 1e-9
        if drift > settings.camera_info_tolerance_s and frame_id not in self._drift_warned:
            self._drift_warned.add(frame_id)
            self.get_logger().warning(
                f"image and latest CameraInfo of frame {frame_id!r} are {drift:.3f} s apart (tolerance "
                f"{settings.camera_info_tolerance_s} s); using it anyway (warned once per frame)")
        converted, converted_cpu = time.perf_counter(), time.thread_time()

        cause, problem = self._stamp_problem(stamp_ns, self._previous_stamp_ns)
        if cause:
            self._drop_for_stamp(cause, problem)
            return
        if self._previous_stamp_ns is not None and stamp_ns < self._previous_stamp_ns:
            reason = (f"image stamps jumped back by {(self._previous_stamp_ns - stamp_ns) * 1e-9:.3f} s (from "
                      f"{self._previous_stamp_ns * 1e-9:.3f} s to {stamp:.3f} s): a looping bag or a restarted "
                      "source; odometry and path restart at the identity")
            self._restart_odometry()
            self.statistics.odometry_reset(reason)
            self._log_throttled(reason, cause="stamp_jump_back")
        size_change = ""
        if self._image_size is not None and self._image_size != (width, height):
            size_change = (f"image size of frame {frame_id!r} changed from {self._image_size[0]}x"
                           f"{self._image_size[1]} to {width}x{height}")

        rgb = info.undistorter.rectify_image(rgb)
        try:
            result = self.pipeline.process(rgb, info.K, stamp)
        except ValueError as error:  # bad input the pipeline refuses, state unchanged
            self._reject(f"pipeline refused the frame stamped {stamp:.3f}: {error}")
            return
        processed, processed_cpu = time.perf_counter(), time.thread_time()

        self._publish(result, header, info, rgb, settings)
        published, published_cpu = time.perf_counter(), time.thread_time()
        self._previous_stamp_ns = stamp_ns
        self._image_size = (width, height)
        self._report_tracking(result, size_change)
        self.statistics.processed(
            pipeline_ms=result.timings_ms,
            node_ms={"convert": (converted - started) * 1e3, "publish": (published - processed) * 1e3},
            node_cpu_ms=(converted_cpu - started_cpu + published_cpu - processed_cpu) * 1e3,
            latency_ms=(published - frame.received) * 1e3, tracking_state=result.tracking_state.value,
            tracking_message=result.message, inliers=result.num_inliers, keypoints=len(result.keypoints),
            scale_source=result.scale_source)

    def _report_tracking(self, result: FrameResult, size_change: str) -> None:
        state = result.tracking_state.value
        if size_change:  # warned once per change: the same change repeating within LOG_THROTTLE_S is folded
            self._log_throttled(f"{size_change}; tracking re-initialised at the new size ({result.message})",
                                cause=size_change)
        elif result.reinitialized and result.message:  # first frame, reset, or an intrinsics change
            self._log_throttled(f"tracking (re)starts: {result.message}", level="info")
        elif state != self._previous_state and state in ("lost", "degraded"):
            self._log_throttled(f"tracking {state}: {result.message}")
        elif state == "ok" and self._previous_state == "lost":
            self.get_logger().info(f"tracking recovered: {result.message}")
        self._previous_state = state

    # ------------------------------------------------------------------------------------------------ outputs
    def _publish(self, result: FrameResult, header: Header, info: _CameraInfoEntry, rgb: np.ndarray,
                 settings: NodeSettings) -> None:
        if settings.publish_depth:
            self._depth_publisher.publish(depth_to_image(result.depth, header))
        if settings.publish_depth_camera_info:
            self._depth_info_publisher.publish(self._depth_camera_info(info, header))
        if settings.publish_keypoints:
            self._keypoints_publisher.publish(points_to_pointcloud2(result.points_camera, header,
                                                                    result.keypoint_scores))
        if settings.publish_odometry or settings.publish_tf or settings.publish_path:
            self._publish_pose(result, header, settings)
        # The pictures cost a few milliseconds: drawn only for someone who looks, by the painting thread.
        colored = settings.publish_colored_depth and self._colored_publisher.get_subscription_count() > 0
        matches = settings.publish_matches and self._matches_publisher.get_subscription_count() > 0
        if colored or matches:
            self._pictures.put(_Pictures(result, rgb, header, colored, matches))

    @staticmethod
    def _depth_camera_info(info: _CameraInfoEntry, header: Header) -> CameraInfo:
        """The depth image's camera: the input CameraInfo, or after rectification the pinhole it was rectified to."""
        if info.undistorter.is_identity:
            return camera_info_with_header(info.message, header)
        return camera_info_message(info.K, info.message.width, info.message.height, header)

    def _paint(self) -> None:
        """Painting thread: visualisation images, off the path of depth, odometry and TF (newest frame only)."""
        while not self._pictures.closed:
            pictures = self._pictures.take(timeout=0.2)
            if pictures is None:
                continue
            result, header = pictures.result, pictures.header
            try:
                if pictures.colored:
                    self._colored_publisher.publish(rgb_to_image(colorize_depth(result.depth), header))
                if pictures.matches:
                    canvas = draw_match_tracks(pictures.rgb, result.previous_keypoints, result.keypoints,
                                               result.matches, result.match_inliers)
                    self._matches_publisher.publish(rgb_to_image(canvas, header))
            except Exception as error:  # a picture must never stop the node
                self._log_throttled(f"visualisation failed: {type(error).__name__}: {error}", level="error")

    def _publish_pose(self, result: FrameResult, header: Header, settings: NodeSettings) -> None:
        """Odometry, TF and path of the camera (or of base_frame through the camera mount, REP 105).

        The pipeline's odometry frame is the first camera's optical frame; ROS's odom frame is that pose seen by
        the base (the mount's axes: x forward, z up by default): T_odom_camera = T_base_camera @ T_pipeline.
        """
        mount = self._mount
        if settings.base_frame:
            child = settings.base_frame
            T_odom_child = mount @ result.T_odom_curr @ invert_transform_np(mount)
            T_prev_curr = mount @ result.T_prev_curr @ invert_transform_np(mount)
            R_child_camera = mount[:3, :3]
        else:
            child = header.frame_id
            T_odom_child = mount @ result.T_odom_curr
            T_prev_curr = result.T_prev_curr
            R_child_camera = np.eye(3)
        stamp = header.stamp
        odom_header = Header(stamp=stamp, frame_id=settings.odom_frame)
        if settings.publish_odometry:
            dt = ((stamp_to_nanoseconds(stamp) - self._previous_stamp_ns) * 1e-9 if self._previous_stamp_ns is not None
                  else 0.0)
            if result.reinitialized or not dt > 0:
                twist, twist_covariance = np.zeros(6), np.eye(6) * LOST_VARIANCE  # no motion observed yet
            else:
                twist = twist_from_relative_pose(T_prev_curr, dt)
                twist_covariance = rotate_covariance(result.relative_covariance, R_child_camera) / dt**2
            pose_covariance = rotate_covariance(result.covariance, mount[:3, :3])
            self._odometry_publisher.publish(odometry_message(T_odom_child, pose_covariance, twist,
                                                              twist_covariance, stamp, settings.odom_frame, child))
        if settings.publish_tf:
            self._tf_publisher.publish(TFMessage(transforms=[transform_stamped(T_odom_child, stamp,
                                                                               settings.odom_frame, child)]))
            if self._tf_static_publisher is not None and header.frame_id not in self._mount_published:
                self._mount_published.add(header.frame_id)
                self._tf_static_publisher.publish(TFMessage(transforms=[transform_stamped(
                    mount, stamp, settings.base_frame, header.frame_id)]))
        if settings.publish_path:
            if self._path.maxlen != settings.path_max_length:  # changed at run time
                self._path = deque(self._path, maxlen=settings.path_max_length)
            self._path.append(pose_stamped(T_odom_child, odom_header))
            now = time.monotonic()
            if now - self._path_published_at >= settings.path_publish_period_s:
                self._path_published_at = now
                self._path_publisher.publish(Path(header=odom_header, poses=list(self._path)))

    def _publish_diagnostics(self) -> None:
        report = self.statistics.report()
        status = diagnostic_status(report, f"{self.get_name()}: depth and odometry", self._hardware_id,
                                   self._image_topic)
        self._diagnostics_publisher.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                            status=[status]))


def main(args: list[str] | None = None) -> int:
    """Console script ``priordepth_node``; returns the exit status (1 when the configuration cannot be used)."""
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = PriorDepthNode()
        except (ParameterError, FileNotFoundError, ValueError, BackendUnavailableError) as error:
            rclpy.logging.get_logger(topics.NODE_NAME).fatal(f"cannot start: {error}")
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return 0
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
