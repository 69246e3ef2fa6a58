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
