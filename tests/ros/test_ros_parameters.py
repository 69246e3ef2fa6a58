"""priordepth_ros.parameters: every PipelineConfig field becomes a documented parameter with the core's default,
values are checked against ranges and choices, and rclpy enforces the declared descriptors."""

from __future__ import annotations

import dataclasses

import pytest

from priordepth_core.config_schema import Range, field_choices, field_range, one_of, ranged
from priordepth_core.inference import PipelineConfig
from priordepth_ros import parameters
from priordepth_ros.parameters import (
    NodeSettings,
    ParameterError,
    check_value,
    node_settings_from_values,
    parameter_specs,
    pipeline_config_from_values,
)


def core_config_comments() -> str:
    """Every comment line of priordepth_core/inference/config.py, joined with spaces."""
    import inspect

    import priordepth_core.inference.config as config_module

    lines = inspect.getsource(config_module).splitlines()
    return " ".join(line.strip().lstrip("#").strip() for line in lines if line.strip().startswith("#"))


def test_every_pipeline_field_is_a_parameter_with_the_core_default_and_its_comment():
    specs = parameter_specs()
    comments = core_config_comments()
    for f in dataclasses.fields(PipelineConfig):
        spec = specs[f.name]
        assert spec.default == f.default and type(spec.default) is type(f.default)
        assert spec.read_only
        assert len(spec.description) > 20 and spec.description in comments  # the comment above the field
        if isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
            assert spec.allowed is not None, f"declare a range for PipelineConfig.{f.name} (ranged(...))"
        if f.name in ("backend", "scale_mode", "lost_motion", "precision"):
            assert spec.choices
    assert specs["backend"].choices == ("torch", "onnxruntime", "openvino", "tensorrt")
    assert (specs["input_width"].allowed.low, specs["input_width"].allowed.step) == (0, 32)


@dataclasses.dataclass
class NarrowerPipelineConfig(PipelineConfig):
    # At most 1024 keypoints per frame.
    max_keypoints: int = ranged(512, 8, 1024)
    lost_motion: str = one_of("hold", ("hold",))


def test_descriptors_are_the_dataclass_declarations(monkeypatch):
    specs = parameter_specs()
    for f in dataclasses.fields(PipelineConfig):
        assert specs[f.name].allowed == field_range(f) and specs[f.name].choices == (field_choices(f) or ())
    monkeypatch.setattr(parameters, "PipelineConfig", NarrowerPipelineConfig)
    narrowed = parameter_specs()
    assert narrowed["max_keypoints"].allowed == Range(8, 1024)
    assert narrowed["max_keypoints"].description == "At most 1024 keypoints per frame."
    assert narrowed["lost_motion"].choices == ("hold",)
    assert narrowed["min_inliers"] == specs["min_inliers"]  # inherited fields keep their declaration and comment
    with pytest.raises(ParameterError, match="'max_keypoints' must be from 8 to 1024, got 2000"):
        check_value(narrowed["max_keypoints"], 2000)


def test_an_open_range_cannot_become_a_descriptor(monkeypatch):
    @dataclasses.dataclass
    class OpenEnded(PipelineConfig):
        max_keypoints: int = ranged(512, 8, None)

    monkeypatch.setattr(parameters, "PipelineConfig", OpenEnded)
    with pytest.raises(RuntimeError, match="'max_keypoints': a ROS descriptor needs a closed, inclusive range"):
        parameter_specs()


def test_node_settings_are_documented_and_grouped():
    specs = parameter_specs()
    assert {"publish.depth", "publish.tf", "camera_mount.xyz", "camera_mount.quaternion_xyzw", "odom_frame",
            "base_frame", "checkpoint", "image_transport", "path_max_length"} <= set(specs)
    assert all(spec.description for spec in specs.values())
    assert not specs["publish.depth"].read_only and specs["checkpoint"].read_only
    assert specs["camera_mount.quaternion_xyzw"].default == [-0.5, 0.5, -0.5, 0.5]


def test_values_map_onto_the_pipeline_config_and_node_settings():
    values = {"backend": "onnxruntime", "input_height": 192, "input_width": 640, "camera_height_m": 2,
              "publish.depth": False, "base_frame": "base_link", "camera_mount.xyz": [0.1, 0, 1.2]}
    config = pipeline_config_from_values(values)
    assert (config.backend, config.input_height, config.input_width) == ("onnxruntime", 192, 640)
    assert config.camera_height_m == 2.0 and isinstance(config.camera_height_m, float)  # YAML writes 2 for 2.0
    settings = node_settings_from_values(values)
    assert not settings.publish_depth and settings.base_frame == "base_link"
    assert settings.camera_mount_xyz == [0.1, 0.0, 1.2]
    assert node_settings_from_values({}) == NodeSettings()


@pytest.mark.parametrize(("name", "value", "error"), [
    ("backend", "tensorflow", "'backend' must be one of: torch, onnxruntime, openvino, tensorrt, got 'tensorflow'"),
    ("input_height", 100, "'input_height' must be from 0 to 4096, multiples of 32, got 100"),
    ("max_keypoints", 4, "'max_keypoints' must be from 8 to 16384"),
    ("max_keypoints", 12.5, "'max_keypoints' must be an integer"),
    ("publish.depth", 1, "'publish.depth' must be a boolean"),
    ("camera_height_m", float("nan"), "'camera_height_m' must be a finite number"),
    ("camera_mount.xyz", [0.0, 1.0], "'camera_mount.xyz' must be a list of 3 finite numbers"),
    ("image_transport", "theora", "'image_transport' must be one of: raw, compressed"),
])
def test_bad_values_are_refused_with_the_parameter_named(name, value, error):
    with pytest.raises(ParameterError, match=error.replace("(", r"\(").replace(")", r"\)")):
        check_value(parameter_specs()[name], value)


def test_inconsistent_settings_are_refused():
    with pytest.raises(ParameterError, match="set both input_height and input_width"):
        pipeline_config_from_values({"input_height": 96})
    with pytest.raises(ParameterError, match="'base_frame' and 'odom_frame' must differ"):
        node_settings_from_values({"base_frame": "odom"})
    with pytest.raises(ParameterError, match="zero quaternion"):
        node_settings_from_values({"camera_mount.quaternion_xyzw": [0.0, 0.0, 0.0, 0.0]})
    with pytest.raises(ParameterError, match="'publish_camera_mount_tf' needs 'base_frame'"):
        node_settings_from_values({"publish_camera_mount_tf": True})


@pytest.mark.ros
def test_rclpy_declares_descriptors_and_enforces_them(ros_domain, monkeypatch):
    rclpy = pytest.importorskip("rclpy", reason="rclpy (the ros-jazzy wheels) is not installed")
    from rclpy.parameter import Parameter

    from priordepth_ros.parameters import declare_parameters

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    try:
        node = rclpy.create_node("parameter_test", context=context, parameter_overrides=[
            Parameter("max_keypoints", value=256), Parameter("publish.matches", value=False)])
        values = declare_parameters(node)
        assert values["max_keypoints"] == 256 and values["publish.matches"] is False
        assert values["backend"] == "openvino" and values["camera_mount.xyz"] == [0.0, 0.0, 0.0]
        descriptor = node.describe_parameter("input_height")
        assert descriptor.read_only and descriptor.integer_range[0].step == 32
        assert descriptor.description == parameter_specs()["input_height"].description
        assert descriptor.description in core_config_comments()
        assert node.describe_parameter("ransac_threshold_px").floating_point_range[0].to_value == 100.0
        assert node.describe_parameter("max_keypoints").integer_range[0].to_value == 16384
        assert not node.set_parameters([Parameter("max_keypoints", value=128)])[0].successful  # read-only
        assert not node.set_parameters([Parameter("path_max_length", value=0)])[0].successful  # below range
        assert node.set_parameters([Parameter("path_max_length", value=50)])[0].successful
        node.destroy_node()

        out_of_range = rclpy.create_node("parameter_test_bad", context=context,
                                         parameter_overrides=[Parameter("match_ratio", value=1.5)])
        with pytest.raises(ParameterError, match=r"'match_ratio'.*from 0\.01 to 1\.0"):
            declare_parameters(out_of_range)
        out_of_range.destroy_node()

        # A range changed in the dataclass is the range rclpy enforces.
        monkeypatch.setattr(parameters, "PipelineConfig", NarrowerPipelineConfig)
        narrowed = rclpy.create_node("parameter_test_narrowed", context=context)
        declare_parameters(narrowed)
        assert narrowed.describe_parameter("max_keypoints").integer_range[0].to_value == 1024
        narrowed.destroy_node()
    finally:
        rclpy.shutdown(context=context)
