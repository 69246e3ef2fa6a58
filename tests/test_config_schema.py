"""priordepth_core.config_schema: fields that declare their ranges and choices, loading from YAML and dicts with
nearest-name errors, dotted overrides, and the round trip through a dict."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from priordepth_core import config_schema
from priordepth_core.config_schema import (
    ConfigError,
    Range,
    apply_overrides,
    check_fields,
    field_comments,
    load,
    merge,
    one_of,
    ranged,
    to_dict,
)


@dataclass
class Solver:
    # RANSAC hypotheses per pair.
    hypotheses: int = ranged(64, 1, 1000)
    # Inlier threshold in pixels.
    threshold_px: float = ranged(1.0, 0, None, low_exclusive=True)
    method: str = one_of("pnp", ("pnp", "essential"))
    # Network input height, multiples of 32.
    height: int = ranged(96, 32, 4096, step=32)
    scales: list[int] = field(default_factory=lambda: [0, 1], metadata={"range": Range(0, 3)})


@dataclass
class Experiment:
    name: str = "run"
    solver: Solver = field(default_factory=Solver)
    seed: int = ranged(0, 0, None)

    def validate(self) -> None:
        check_fields(self)


def test_range_bounds_steps_and_text():
    assert 0.5 in Range(0, 1) and 1 in Range(0, 1) and 1 not in Range(0, 1, high_exclusive=True)
    assert 0 not in Range(0, None, low_exclusive=True) and float("nan") not in Range() and float("inf") not in Range()
    assert 96 in Range(32, 4096, step=32) and 100 not in Range(32, 4096, step=32)
    assert 3 in Range(1, 9, step=2) and 4 not in Range(1, 9, step=2)
    assert str(Range(0, 1, low_exclusive=True)) == "> 0 and <= 1"
    assert str(Range(1, None)) == ">= 1" and str(Range(None, 5, high_exclusive=True)) == "< 5"
    assert str(Range(0, 4096, step=32)) == ">= 0 and <= 4096 and a multiple of 32"
    assert str(Range(1, 9, step=2)) == ">= 1 and <= 9 in steps of 2 from 1"
    assert Range(0, 1).closed and not Range(0, None).closed and not Range(0, 1, low_exclusive=True).closed


def test_one_of_refuses_a_default_outside_its_choices():
    with pytest.raises(ValueError, match="not one of its choices"):
        one_of("magic", ("pnp", "essential"))


@pytest.mark.parametrize(("override", "message"), [
    ("solver.hypotheses=0", "config value solver.hypotheses must be >= 1 and <= 1000, got 0"),
    ("solver.threshold_px=0", "config value solver.threshold_px must be > 0, got 0.0"),
    ("solver.method=dlt", "config value solver.method must be one of ['pnp', 'essential'], got 'dlt'"),
    ("solver.height=100", "config value solver.height must be >= 32 and <= 4096 and a multiple of 32, got 100"),
    ("solver.scales=[0, 5]", "config value solver.scales must be >= 0 and <= 3, got [0, 5]"),
    ("seed=-1", "config value seed must be >= 0, got -1"),
])
def test_values_outside_their_declaration_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError) as error:
        load(Experiment(), overrides=[override])
    assert str(error.value) == message


def test_check_fields_checks_types_of_values_set_in_code():
    with pytest.raises(ConfigError, match=r"config value solver\.hypotheses must be an integer, got 12\.5"):
        check_fields(Experiment(solver=Solver(hypotheses=12.5)))
    with pytest.raises(ConfigError, match="config value seed must be an integer, got True"):
        check_fields(Experiment(seed=True))
    check_fields(Experiment(solver=Solver(threshold_px=2)))  # an int is a number


def test_unknown_keys_name_the_nearest_key_anywhere_in_the_tree():
    with pytest.raises(ConfigError, match=r"^unknown config key 'solver\.hypothesis'; did you mean "
                                          r"'solver\.hypotheses'\?$"):
        load(Experiment(), overrides=["solver.hypothesis=3"])
    with pytest.raises(ConfigError, match=r"'threshold_px'; did you mean 'solver\.threshold_px'\?"):
        merge(Experiment(), {"threshold_px": 2.0})
    with pytest.raises(ConfigError, match=r"unknown setting 'zzz'; known here: name, seed, solver"):
        merge(Experiment(), {"zzz": 1}, what="setting")


def test_overrides_parse_values_as_yaml_and_apply_in_order():
    config = apply_overrides(Experiment(), ["solver.threshold_px=2e-1", "solver.scales=[0, 2]", "name=09",
                                            "seed=3", "seed=4"])
    assert config.solver.threshold_px == pytest.approx(0.2) and config.solver.scales == [0, 2]
    assert config.name == "09" and config.seed == 4
    assert Experiment().seed == 0  # a copy, the input is untouched
    with pytest.raises(ConfigError, match=r"must look like key=value or section\.key=value"):
        apply_overrides(Experiment(), ["seed"])
    with pytest.raises(ConfigError, match=r"'solver\.hypotheses' expects int, got 'many'"):
        apply_overrides(Experiment(), ["solver.hypotheses=many"])
    with pytest.raises(ConfigError, match=r"config section 'solver' must be a mapping"):
        apply_overrides(Experiment(), ["solver=3"])


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text("name: long\nsolver:\n  hypotheses: 200\n  method: essential\n")
    config = load(Experiment(), path, ["solver.hypotheses=300"])
    assert (config.name, config.solver.hypotheses, config.solver.method) == ("long", 300, "essential")
    path.write_text("solver:\n  hypotheses: 0\n")
    with pytest.raises(ConfigError, match=r"solver\.hypotheses must be >= 1"):
        load(Experiment(), path)
    path.write_text("solver:\n  hypothses: 3\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: unknown config key 'solver.hypothses'; did you mean")):
        load(Experiment(), path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load(Experiment(), path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(Experiment(), tmp_path / "missing.yaml")


def test_round_trip_through_a_json_dict():
    config = apply_overrides(Experiment(), ["solver.scales=[1, 3]", "solver.threshold_px=0.5", "seed=9"])
    saved = json.loads(json.dumps(to_dict(config)))
    assert merge(Experiment(), saved) == config
    assert merge(Experiment(), to_dict(Experiment())) == Experiment()


def test_field_comments_are_the_lines_above_each_field_including_inherited_ones():
    @dataclass
    class Tighter(Solver):
        # Fewer hypotheses on a small CPU.
        hypotheses: int = ranged(16, 1, 64)

    comments = field_comments(Solver)
    assert comments["hypotheses"] == "RANSAC hypotheses per pair."
    assert comments["method"] == comments["threshold_px"] == "Inlier threshold in pixels."  # shares the line above
    assert field_comments(Tighter)["hypotheses"] == "Fewer hypotheses on a small CPU."
    assert field_comments(Tighter)["height"] == "Network input height, multiples of 32."


def test_the_module_imports_nothing_of_the_project():
    tree = ast.parse(Path(config_schema.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name.startswith("priordepth")]
    assert all(node.level == 0 for node in ast.walk(tree) if isinstance(node, ast.ImportFrom))
