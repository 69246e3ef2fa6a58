"""The node's parameters: names, defaults, descriptions and ranges, and their mapping onto the core's config.

Two groups:

- Pipeline parameters: one per field of :class:`priordepth_core.inference.PipelineConfig`, named as the field, with
  the field's default, its declared range or choices as the descriptor's, and the comment above the field in
  ``config.py`` as description (defaults, limits and their reasons live there and nowhere else). Read-only: the
  pipeline is built once, at start.
- Node parameters (:class:`NodeSettings`): the checkpoint, input transport, frame names, the camera mount, publish
  toggles, queue and diagnostics settings, declared the same way (:mod:`priordepth_core.config_schema`). The publish
  toggles and timing settings may change at run time.

Everything here is plain Python (the launch-file and YAML checks use it without ROS); only :func:`declare_parameters`
touches rclpy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from priordepth_core.config_schema import (
    ConfigError,
    Range,
    field_choices,
    field_comments,
    field_default,
    field_range,
    one_of,
    ranged,
)
from priordepth_core.inference import PipelineConfig

# Camera mount default: the optical frame (x right, y down, z forward; REP 103) on a body with x forward, y left,
# z up (REP 103/105), i.e. the rotation of `static_transform_publisher --roll -1.5708 --yaw -1.5708`.
OPTICAL_IN_BODY_XYZW = (-0.5, 0.5, -0.5, 0.5)
IMAGE_TRANSPORTS = ("raw", "compressed")


class ParameterError(ValueError):
    """A parameter value the node cannot use; the text names the parameter."""


@dataclass(frozen=True)
class ParameterSpec:
    """One declared parameter; ``allowed`` (a closed range) or ``choices`` become its descriptor's constraints."""

    name: str
    default: Any
    description: str
    read_only: bool = True
    allowed: Range | None = None
    choices: tuple[Any, ...] = ()

    @property
    def constraints(self) -> str:
        """Human-readable constraint text (the descriptor's ``additional_constraints``)."""
        if self.choices:
            return "one of: " + ", ".join(str(choice) for choice in self.choices)
        if self.allowed is not None:
            step = f", multiples of {self.allowed.step}" if self.allowed.step and self.allowed.step > 1 else ""
            return f"from {self.allowed.low} to {self.allowed.high}{step}"
        return ""


@dataclass
class NodeSettings:
    """The node's own settings (everything that is not the pipeline's)."""

    # Packaged inference model (e.g. DIR/model.pt of priordepth-train-bag) or trainer checkpoint, or the name of a
    # model shipped in priordepth_core (driving, indoor); "" = the default shipped model (driving).
    checkpoint: str = ""
    # "raw": the image topic carries sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8); "compressed":
    # sensor_msgs/CompressedImage (JPEG/PNG), e.g. image:=/camera/image_raw/compressed.
    image_transport: str = one_of("raw", IMAGE_TRANSPORTS)
    # Intrinsics from CameraInfo P (rectified image_rect topics, REP 104) instead of K (raw images).
    use_rectified_projection: bool = False
    # Camera frame used when an image arrives with an empty header.frame_id.
    camera_frame: str = "camera_optical"
    # Odometry frame (REP 105): the first camera pose, with the body axes of camera_mount (x forward, z up).
    odom_frame: str = "odom"
    # "" = TF and odometry odom -> camera frame; a frame name = odom -> base_frame through camera_mount (REP 105).
    base_frame: str = ""
    # Position of the camera's optical frame in base_frame (translation of T_base_camera), metres.
    camera_mount_xyz: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    # Orientation of the camera's optical frame in base_frame, quaternion (x, y, z, w); the default is an optical
    # frame on a body with x forward and z up. Without base_frame it still sets the odom frame's axes.
    camera_mount_quaternion_xyzw: list[float] = field(default_factory=lambda: list(OPTICAL_IN_BODY_XYZW))
    # Also publish base_frame -> camera frame from camera_mount on /tf_static (when no robot_state_publisher does).
    publish_camera_mount_tf: bool = False
    # Warn (once per camera frame) when an image and the latest CameraInfo of its frame are further apart than this.
    camera_info_tolerance_s: float = ranged(0.5, 0.0, 3600.0)
    # Skip frames whose header stamp is older than this compared with the node's clock; 0 = off. Needs
    # synchronised clocks, or use_sim_time with a /clock (bag replay with --clock).
    max_input_age_s: float = ranged(0.0, 0.0, 3600.0)
    # Poses kept in the ~/path message (oldest dropped first).
    path_max_length: int = ranged(1000, 1, 1_000_000)
    # Publish ~/path at most once per this many seconds (0 = with every frame): a Path of 1000 poses takes about
    # 6 ms to publish from Python, too much for every frame of a 30 Hz camera, and RViz needs no more.
    path_publish_period_s: float = ranged(1.0, 0.0, 3600.0)
    # Period of the /diagnostics report, seconds (rates and latencies are averaged over it).
    diagnostics_period_s: float = ranged(1.0, 0.1, 60.0)
    # Publish ~/depth (32FC1, metres, NaN where invalid).
    publish_depth: bool = True
    # Publish ~/depth/camera_info (the input CameraInfo with the depth image's header).
    publish_depth_camera_info: bool = True
    # Publish ~/depth/colored (inverse depth, magma colour map); drawn only while someone subscribes.
    publish_colored_depth: bool = True
    # Publish ~/matches (the image with keypoint tracks, inliers green, outliers red); drawn only while subscribed.
    publish_matches: bool = True
    # Publish ~/keypoints (PointCloud2 of the keypoints lifted with depth, camera frame, with their score).
    publish_keypoints: bool = True
    # Publish ~/odometry (nav_msgs/Odometry with covariance; very large while tracking is lost).
    publish_odometry: bool = True
    # Publish ~/path (nav_msgs/Path of the last path_max_length poses).
    publish_path: bool = True
    # Publish the odom -> camera (or base_frame) transform on /tf.
    publish_tf: bool = True


def _ros_name(setting: str) -> str:
    """ROS name of a NodeSettings field: the publish toggles and the mount are grouped (``publish.depth``)."""
    if setting.startswith("publish_") and setting != "publish_camera_mount_tf":
        return "publish." + setting.removeprefix("publish_")
    if setting.startswith("camera_mount_"):
        return "camera_mount." + setting.removeprefix("camera_mount_")
    return setting


_NODE_PARAMETER_NAMES = {f.name: _ros_name(f.name) for f in dataclasses.fields(NodeSettings)}

# Settings that may change while the node runs; every other parameter is read-only.
_RUNTIME_SETTINGS = {"camera_info_tolerance_s", "max_input_age_s", "path_max_length", "path_publish_period_s",
                     "publish_depth", "publish_depth_camera_info", "publish_colored_depth", "publish_matches",
                     "publish_keypoints", "publish_odometry", "publish_path", "publish_tf"}


def _spec(spec: dataclasses.Field, name: str, description: str, read_only: bool) -> ParameterSpec:
    """The parameter of one config field: its default, and its declared range or choices as the descriptor's."""
    allowed = field_range(spec)
    if allowed is not None and not allowed.closed:
        raise RuntimeError(f"parameter {name!r}: a ROS descriptor needs a closed, inclusive range, the field declares "
                           f"{allowed}")
    return ParameterSpec(name, field_default(spec), description, read_only, allowed, field_choices(spec) or ())


def pipeline_parameter_specs() -> list[ParameterSpec]:
    """One read-only parameter per PipelineConfig field of a type ROS parameters can hold."""
    comments = field_comments(PipelineConfig)
    return [_spec(f, f.name, comments.get(f.name) or f"PipelineConfig.{f.name} (priordepth_core.inference.config)",
                  read_only=True)
            for f in dataclasses.fields(PipelineConfig) if isinstance(field_default(f), bool | int | float | str)]


def node_parameter_specs() -> list[ParameterSpec]:
    comments = field_comments(NodeSettings)
    return [_spec(f, _NODE_PARAMETER_NAMES[f.name], comments[f.name], read_only=f.name not in _RUNTIME_SETTINGS)
            for f in dataclasses.fields(NodeSettings)]


def parameter_specs() -> dict[str, ParameterSpec]:
    """Every parameter the node declares, by ROS name."""
    specs = {spec.name: spec for spec in node_parameter_specs()}
    for spec in pipeline_parameter_specs():
        if spec.name in specs:
            raise RuntimeError(f"parameter {spec.name!r} is both a node setting and a PipelineConfig field")
        specs[spec.name] = spec
    return specs


def check_value(spec: ParameterSpec, value: Any) -> Any:
    """``value`` if it suits ``spec`` (type, range, choices); raises ParameterError naming the problem.

    Integers are accepted for float parameters (YAML writes 1 for 1.0); booleans are never numbers.
    """
    default = spec.default
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:  # a list of floats (rclpy may hand over an array.array)
        ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == len(default) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        value = [float(v) for v in value] if ok else value
    if not ok:
        raise ParameterError(f"parameter {spec.name!r} must be {_type_name(default)}, got {value!r}")
    if (spec.choices and value not in spec.choices) or (spec.allowed is not None and value not in spec.allowed):
        raise ParameterError(f"parameter {spec.name!r} must be {spec.constraints}, got {value!r}")
    return value


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "a boolean"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a finite number"
    if isinstance(default, str):
        return "a string"
    return f"a list of {len(default)} finite numbers"


def pipeline_config_from_values(values: dict[str, Any]) -> PipelineConfig:
    """PipelineConfig of parameter values (by ROS name; node settings are ignored). Raises ParameterError."""
    fields = {f.name for f in dataclasses.fields(PipelineConfig)}
    specs = parameter_specs()
    changes = {name: check_value(specs[name], value) for name, value in values.items() if name in fields}
    try:
        return PipelineConfig().replace(**changes)
    except ConfigError as error:
        raise ParameterError(str(error)) from None


def node_settings_from_values(values: dict[str, Any]) -> NodeSettings:
    """NodeSettings of parameter values (by ROS name; pipeline fields are ignored). Raises ParameterError."""
    specs = parameter_specs()
    settings = NodeSettings()
    for name, ros_name in _NODE_PARAMETER_NAMES.items():
        if ros_name in values:
            setattr(settings, name, check_value(specs[ros_name], values[ros_name]))
    if not settings.odom_frame:
        raise ParameterError("parameter 'odom_frame' must not be empty")
    if settings.base_frame and settings.base_frame == settings.odom_frame:
        raise ParameterError(f"parameters 'base_frame' and 'odom_frame' must differ, both are {settings.odom_frame!r}")
    if math.sqrt(sum(v * v for v in settings.camera_mount_quaternion_xyzw)) < 1e-6:
        raise ParameterError("parameter 'camera_mount.quaternion_xyzw' must not be the zero quaternion")
    if settings.publish_camera_mount_tf and not settings.base_frame:
        raise ParameterError("parameter 'publish_camera_mount_tf' needs 'base_frame' (the parent of the mount)")
    return settings


def declare_parameters(node) -> dict[str, Any]:
    """Declare every parameter on an rclpy node with its descriptor; returns the values in effect by ROS name.

    Raises:
        ParameterError: an override of the wrong type or out of range (rclpy's own check, reworded).
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    values = {}
    for spec in parameter_specs().values():
        descriptor = ParameterDescriptor(name=spec.name, description=spec.description, read_only=spec.read_only,
                                         additional_constraints=spec.constraints)
        allowed = spec.allowed
        if allowed is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(allowed.low), to_value=int(allowed.high),
                                                     step=allowed.step or 1)]
        elif allowed is not None:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(allowed.low),
                                                                  to_value=float(allowed.high), step=0.0)]
        try:
            parameter = node.declare_parameter(spec.name, spec.default, descriptor)
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            raise ParameterError(f"parameter {spec.name!r}: {error} (allowed: {spec.constraints or 'any value'}; "
                                 f"default {spec.default!r})") from None
        value = parameter.value
        values[spec.name] = list(value) if isinstance(spec.default, list) else value
    return values
