"""Typed configuration read from YAML: dataclass fields that declare their allowed values, dotted overrides, one error.

Every config of the project (the trainer's ``ExperimentConfig``, the Pipeline's ``PipelineConfig``, the ROS node's
settings) is a dataclass whose fields carry a commented default and, where it matters, a :class:`Range` or a tuple of
choices in their metadata (:func:`ranged`, :func:`one_of`). This module reads such a dataclass from YAML or a dict,
applies ``key=value`` / ``section.key=value`` overrides, checks every value against its annotation, range and
choices, and refuses unknown keys with the nearest valid name. It imports nothing of the project, so every layer
may use it.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml


class ConfigError(ValueError):
    """A configuration file, override or value that cannot be used; the message names the key and the problem."""


@dataclass(frozen=True)
class Range:
    """The values a numeric config field accepts: ``low <= value <= high`` (strict where ``*_exclusive``).

    ``None`` leaves that side open; ``step`` also requires ``value - low`` to be a multiple of it (integer fields,
    as a ROS ``IntegerRange``). Declared next to each field (:func:`ranged`) and checked at load time, so a value such
    as ``run.checkpoint_every=0`` is refused with its allowed range instead of failing later in the run.
    """

    low: float | None = None
    high: float | None = None
    low_exclusive: bool = False
    high_exclusive: bool = False
    step: int | None = None

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_exclusive else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_exclusive else value > self.high):
            return False
        return not self.step or (value - (self.low or 0)) % self.step == 0

    @property
    def closed(self) -> bool:
        """Both ends given and inclusive: the form a ROS parameter descriptor can hold."""
        return None not in (self.low, self.high) and not (self.low_exclusive or self.high_exclusive)

    def __str__(self) -> str:
        above = f"{'>' if self.low_exclusive else '>='} {self.low}"
        below = f"{'<' if self.high_exclusive else '<='} {self.high}"
        if self.low is not None and self.high is not None:
            text = f"{above} and {below}"
        else:
            text = above if self.low is not None else below if self.high is not None else "finite"
        if self.step and self.step > 1:
            on_grid = not self.low or self.low % self.step == 0
            text += f" and a multiple of {self.step}" if on_grid else f" in steps of {self.step} from {self.low}"
        return text


def ranged(default: float, low: float | None, high: float | None, *, low_exclusive: bool = False,
           high_exclusive: bool = False, step: int | None = None) -> Any:
    """A dataclass field with ``default`` whose values must lie in the given :class:`Range`."""
    return field(default=default, metadata={"range": Range(low, high, low_exclusive, high_exclusive, step)})


def one_of(default: Any, choices: Iterable[Any]) -> Any:
    """A dataclass field with ``default`` whose values must be one of ``choices``."""
    choices = tuple(choices)
    if default not in choices:
        raise ValueError(f"default {default!r} is not one of its choices {list(choices)}")
    return field(default=default, metadata={"choices": choices})


def field_range(spec: dataclasses.Field) -> Range | None:
    """The :class:`Range` a field declares, if any."""
    return spec.metadata.get("range")


def field_choices(spec: dataclasses.Field) -> tuple[Any, ...] | None:
    """The choices a field declares, if any."""
    return spec.metadata.get("choices")


def field_default(spec: dataclasses.Field) -> Any:
    """A field's default value (a fresh one for ``default_factory`` fields)."""
    return spec.default_factory() if spec.default is dataclasses.MISSING else spec.default


def field_comments(cls: type) -> dict[str, str]:
    """The ``#`` comment lines directly above each field of a dataclass (its bases' fields too), joined: their
    documentation.

    A field without a comment right above it shares the comment of the field on the line before (one comment
    above a group of fields).
    """
    comments: dict[str, str] = {}
    for owner in reversed(cls.__mro__):
        if dataclasses.is_dataclass(owner):
            comments.update(_own_field_comments(owner))
    return comments


def _own_field_comments(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments: dict[str, str] = {}
    previous = None
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            block = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#"):
                block.insert(0, lines[row].strip().lstrip("#").strip())
                row -= 1
            if not block and previous is not None and previous.end_lineno == node.lineno - 1:
                comments[node.target.id] = comments[previous.target.id]
            else:
                comments[node.target.id] = " ".join(block)
            previous = node
        else:
            previous = None
    return comments


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain, JSON-able dicts and lists (what a checkpoint stores)."""
    return dataclasses.asdict(config)


def check_fields(config: Any, prefix: str = "") -> None:
    """Check every field of ``config`` (nested sections too) against its annotation, range and choices.

    Raises:
        ConfigError: ``config value <key> must be <what is allowed>, got <value>``.
    """
    hints = typing.get_type_hints(type(config))
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        name = f"{prefix}{spec.name}"
        if dataclasses.is_dataclass(value):
            check_fields(value, f"{name}.")
            continue
        if not _has_type(value, hints[spec.name]):
            raise ConfigError(f"config value {name} must be {_type_name(hints[spec.name])}, got {value!r}")
        allowed, choices = field_range(spec), field_choices(spec)
        for item in value if isinstance(value, list) else [value]:
            if allowed is not None and item not in allowed:
                raise ConfigError(f"config value {name} must be {allowed}, got {value!r}")
            if choices is not None and item not in choices:
                raise ConfigError(f"config value {name} must be one of {list(choices)}, got {value!r}")


def _has_type(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_has_type(item, item_type) for item in value)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, option) for option in typing.get_args(annotation))
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return annotation is Any or isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is list:
        return f"a list of {_type_name(typing.get_args(annotation)[0])}"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(annotation, str(annotation))


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a config tree, sections included (``optim``, ``optim.lr``, ...)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        keys.append(f"{prefix}{spec.name}")
        if dataclasses.is_dataclass(hints[spec.name]):
            keys += all_keys(hints[spec.name], f"{prefix}{spec.name}.")
    return keys


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """``value`` read from YAML or a caller, converted to a field's annotation where that is lossless.

    Ints are accepted where floats are expected, strings such as ``"2e-4"`` (YAML 1.1 reads an exponent without a
    dot as a string) where floats are, and numbers where strings are (sequence ids such as ``09``).
    """
    origin = typing.get_origin(annotation)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key '{key}' expects a list, got {value!r}")
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}' has an unsupported value {value!r}")
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"config key '{key}' expects float, got {value!r}") from None
    if annotation is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if annotation in (int, float, str, bool) and not (isinstance(value, annotation)
                                                    and not (annotation is int and isinstance(value, bool))):
        raise ConfigError(f"config key '{key}' expects {annotation.__name__}, got {value!r}")
    return value


Config = TypeVar("Config")


def merge(config: Config, updates: dict[str, Any], *, what: str = "config key") -> Config:
    """A copy of ``config`` with the (nested) ``updates`` applied, each value converted to its field's type.

    Values are not range-checked here (a file and its overrides may pass through invalid states); call
    :func:`check_fields` or the config's ``validate`` on the result.

    Raises:
        ConfigError: an unknown key (with the nearest valid one: ``unknown <what> 'optm'; did you mean 'optim'?``),
            a value of the wrong type, or a section that is not a mapping.
    """
    return _merge(config, updates, "", type(config), what)


def _merge(config: Any, updates: Any, prefix: str, root: type, what: str) -> Any:
    if not isinstance(updates, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {updates!r}")
    hints = typing.get_type_hints(type(config))
    names = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(full, all_keys(root), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"known here: {', '.join(sorted(names))}"
            raise ConfigError(f"unknown {what} '{full}'; {hint}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _merge(current, value, f"{full}.", root, what)
        else:
            changes[key] = _coerce(value, hints[key], full)
    return dataclasses.replace(config, **changes)


def parse_override(text: str) -> dict[str, Any]:
    """``"section.key=value"`` -> ``{"section": {"key": value}}``, the value parsed as YAML (``[-2, 2]``, ``2e-4``)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value or section.key=value")
    key, raw = text.split("=", 1)
    try:
        nested: Any = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override '{text}': the value is not valid YAML") from None
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def apply_overrides(config: Config, overrides: Iterable[str]) -> Config:
    """A copy of ``config`` with ``key=value`` / ``section.key=value`` overrides applied in order (not validated)."""
    for text in overrides:
        config = merge(config, parse_override(text))
    return config


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file (an empty file is ``{}``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {data!r}")
    return data


class Validated(Protocol):
    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value no run can use (:func:`check_fields`, then cross-field rules)."""


Loaded = TypeVar("Loaded", bound=Validated)


def load(base: Loaded, path: str | Path | None = None, overrides: Iterable[str] = ()) -> Loaded:
    """``base`` (usually the defaults) updated from an optional YAML file, then ``key=value`` overrides; validated.

    Raises:
        ConfigError: unreadable file, unknown key, wrong value type, or a value no run can use.
    """
    config = base if path is None else merge_file(base, path)
    config = apply_overrides(config, overrides)
    config.validate()
    return config


def merge_file(config: Config, path: str | Path) -> Config:
    """A copy of ``config`` updated from a YAML file (not validated); errors name the file."""
    data = read_yaml(path)
    try:
        return merge(config, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
