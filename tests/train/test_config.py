import dataclasses
import typing
from pathlib import Path

import pytest

from priordepth_core.train.config import ConfigError, ExperimentConfig, config_from_dict, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]

CONFIG_DIR = REPO_ROOT / "config" / "train"


def test_defaults_validate():
    config = load_config()
    assert config.pose.source == "posenet" and config.loss.ssim_alpha == 0.85


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.name == path.stem


def test_kitti_recipe_matches_monodepth2():
    config = load_config(CONFIG_DIR / "kitti_eigen_zhou.yaml")
    assert (config.data.width, config.data.height, config.optim.batch_size) == (640, 192, 12)
    assert config.optim.lr == pytest.approx(1e-4) and config.optim.epochs == 20
    assert config.data.context_offsets == [-1, 1]


def test_unknown_key_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"unknown config key 'nope'"):
        load_config(overrides=["nope=1"])


def test_overrides_and_type_errors():
    config = load_config(overrides=["optim.lr=2e-4", "pose.source=pnp", "data.context_offsets=[-2, 2]"])
    assert config.optim.lr == pytest.approx(2e-4) and config.pose.source == "pnp"
    assert config.data.context_offsets == [-2, 2]
    with pytest.raises(ConfigError, match=r"optim\.batch_size' expects int"):
        load_config(overrides=["optim.batch_size=big"])
    with pytest.raises(ConfigError, match=r"pose\.source must be one of"):
        load_config(overrides=["pose.source=magic"])
    with pytest.raises(ConfigError, match="multiple of 32"):
        load_config(overrides=["data.width=100"])
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(overrides=["optim.lr"])


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip_through_dict():
    config = load_config(overrides=["run.seed=7", "loss.keypoint_weight=0.5"])
    assert config_from_dict(config.to_dict()) == config
    assert config_from_dict(ExperimentConfig().to_dict()) == ExperimentConfig()


def _numeric_fields(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        annotation = hints[spec.name]
        if dataclasses.is_dataclass(annotation):
            yield from _numeric_fields(annotation, f"{prefix}{spec.name}.")
        elif annotation in (int, float) or typing.get_args(annotation) in ((int,), (float,)):
            yield f"{prefix}{spec.name}", spec


def test_every_numeric_field_declares_its_range():
    undeclared = [name for name, spec in _numeric_fields(ExperimentConfig)
                  if "range" not in spec.metadata and "choices" not in spec.metadata]
    assert not undeclared


@pytest.mark.parametrize(("override", "message"), [
    ("run.checkpoint_every=0", "config value run.checkpoint_every must be >= 1, got 0"),
    ("run.log_every=-5", "config value run.log_every must be >= 1, got -5"),
    ("optim.lr=0", "config value optim.lr must be > 0, got 0.0"),
    ("optim.lr=.nan", "config value optim.lr must be > 0, got nan"),
    ("loss.ssim_alpha=1.5", "config value loss.ssim_alpha must be >= 0 and <= 1, got 1.5"),
    ("loss.scales=[0, 4]", "config value loss.scales must be >= 0 and <= 3, got [0, 4]"),
    ("model.num_layers=19", "config value model.num_layers must be one of [18, 34, 50], got 19"),
])
def test_out_of_range_values_name_field_value_and_range(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=[override])
    assert str(error.value) == message


def test_unknown_keys_suggest_the_nearest_name(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("run:\n  checkpoint_evry: 10\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'run\.checkpoint_evry'; did you mean "
                                          r"'run\.checkpoint_every'\?"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"'optim\.checkpoint_every'; did you mean 'run\.checkpoint_every'\?"):
        load_config(overrides=["optim.checkpoint_every=3"])
    with pytest.raises(ConfigError, match=r"'optm'; did you mean 'optim'\?"):
        load_config(overrides=["optm.lr=0.1"])
