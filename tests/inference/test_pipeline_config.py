"""PipelineConfig from YAML with ``key=value`` overrides, validated as the trainer's config is; and the infer CLI's
``--config`` / ``--set`` / shorthand flags, which all land on the same fields."""

from __future__ import annotations

import dataclasses
import re

import pytest

from priordepth_core.config_schema import ConfigError, field_range
from priordepth_core.infer.__main__ import build_parser, main, pipeline_config
from priordepth_core.inference import PipelineConfig
from priordepth_core.inference.config import load_pipeline_config


def test_defaults_are_kept_and_every_numeric_field_declares_its_range():
    assert load_pipeline_config() == PipelineConfig()
    for spec in dataclasses.fields(PipelineConfig):
        if isinstance(spec.default, int | float) and not isinstance(spec.default, bool):
            assert field_range(spec) is not None and field_range(spec).closed, spec.name


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("backend: onnxruntime\nmin_inliers: 30\ncamera_height_m: 2\ninput_height: 192\n"
                    "input_width: 640\n")
    config = load_pipeline_config(path, ["min_inliers=40", "lost_motion=constant_velocity"])
    assert (config.backend, config.min_inliers, config.lost_motion) == ("onnxruntime", 40, "constant_velocity")
    assert config.camera_height_m == 2.0 and isinstance(config.camera_height_m, float)
    assert (config.input_height, config.input_width) == (192, 640)


@pytest.mark.parametrize(("overrides", "message"), [
    (["min_inliers=3"], "config value min_inliers must be >= 6 and <= 10000, got 3"),
    (["match_ratio=1.5"], "config value match_ratio must be >= 0.01 and <= 1.0, got 1.5"),
    (["backend=caffe"],
     "config value backend must be one of ['torch', 'onnxruntime', 'openvino', 'tensorrt'], got 'caffe'"),
    (["input_height=100", "input_width=320"],
     "config value input_height must be >= 0 and <= 4096 and a multiple of 32, got 100"),
    (["input_height=32", "input_width=320"],
     "config value input_height must be 0 (the checkpoint's size) or at least 64 (DepthNet's strides), got 32"),
    (["input_height=96"], "set both input_height and input_width, or neither"),
    (["device=gpu"], "config value device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    (["max_keypoints=many"], "config key 'max_keypoints' expects int, got 'many'"),
    (["min_inlier=30"], "unknown config key 'min_inlier'; did you mean 'min_inliers'?"),
])
def test_a_bad_value_is_one_line_naming_the_field(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_pipeline_config(overrides=overrides)
    assert str(error.value) == message


def test_a_bad_value_in_the_file_names_the_file(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("ransac_threshold: 2.0\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: unknown config key 'ransac_threshold'; did you mean "
                                                    "'ransac_threshold_px'?")):
        load_pipeline_config(path)


def test_replace_names_the_nearest_field():
    assert PipelineConfig().replace(num_threads=2).num_threads == 2
    with pytest.raises(ConfigError, match=r"unknown PipelineConfig field 'camera_hieght_m'; did you mean "
                                          r"'camera_height_m'\?"):
        PipelineConfig().replace(camera_hieght_m=1.0)


def cli_config(*flags: str) -> PipelineConfig:
    return pipeline_config(build_parser().parse_args(["--input", "x", "--out", "y", *flags]))


def test_cli_shorthands_config_file_and_set_land_on_the_same_fields(tmp_path):
    assert cli_config() == PipelineConfig(num_threads=1)  # the runner's one thread per network
    shorthands = cli_config("--backend", "onnxruntime", "--device", "cuda:1", "--threads", "2", "--size", "640x192",
                            "--scale-mode", "camera_height", "--camera-height", "1.7", "--max-keypoints", "256",
                            "--keypoints", "yes.pt", "--concurrent-networks")
    spelled_out = cli_config("--set", "backend=onnxruntime", "--set", "device=cuda:1", "--set", "num_threads=2",
                             "--set", "input_width=640", "--set", "input_height=192", "--set",
                             "scale_mode=camera_height", "--set", "camera_height_m=1.7", "--set", "max_keypoints=256",
                             "--set", "keypoint_checkpoint=yes.pt", "--set", "concurrent_networks=true")
    assert shorthands == spelled_out
    assert shorthands.keypoint_checkpoint == "yes.pt" and shorthands.input_height == 192

    path = tmp_path / "pipeline.yaml"
    path.write_text("num_threads: 4\nmin_inliers: 30\nmax_keypoints: 128\n")
    config = cli_config("--config", str(path), "--max-keypoints", "300", "--set", "min_inliers=40")
    assert (config.num_threads, config.max_keypoints, config.min_inliers) == (4, 300, 40)
    assert cli_config("--threads", "3", "--set", "num_threads=5").num_threads == 5  # --set wins


def test_cli_refuses_a_bad_setting_before_reading_the_input(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--input", str(tmp_path / "missing"), "--out", str(out), "--set", "min_inliers=3"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "error: config value min_inliers must be >= 6 and <= 10000, got 3"
    assert main(["--input", str(tmp_path / "missing"), "--out", str(out), "--backend", "tensorflow"]) == 2
    assert "backend must be one of" in capsys.readouterr().err
    assert not out.exists()
