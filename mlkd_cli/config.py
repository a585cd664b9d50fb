"""Typed configs: dataclasses read from and written to YAML.

Unknown keys and values of the wrong type are errors naming the file and the dotted key
(a misspelt option must not be silently ignored), and nested dataclass fields are built
recursively, so ``config.yaml`` in an experiment directory
rebuilds exactly the objects that wrote it.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mlkd_cli.errors import ConfigError

T = TypeVar("T")

# PyYAML (YAML 1.1) reads a float without a dot, such as 1e-3, as a string: accept it as a number.
FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
PLURALS = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}


class WrongType(ConfigError):
    """A value that does not fit its field's annotation."""


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a plain mapping, rejecting unknown keys and values of the wrong type.

    Values are checked against the field annotations (int, float, bool, str, tuples and
    lists of them, nested dataclasses, Optional); ints are accepted for floats, bools for
    nothing but bools. The class's own validation speaks first: its messages are specific.
    """
    return _build(cls, data, where, "")


def _build(cls: type[T], data: Any, where: str, prefix: str) -> T:
    location = f"{where}.{prefix}" if prefix else where
    if not isinstance(data, dict):
        raise ConfigError(f"{location}: expected a mapping of keys to values, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{location}: unknown key(s) {', '.join(unknown)}; valid keys are: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs, wrong = {}, []
    for name, value in data.items():
        try:
            kwargs[name] = _typed(hints[name], value, where, f"{prefix}.{name}" if prefix else name)
        except WrongType as e:
            kwargs[name] = value
            wrong.append(e)
    try:
        built = cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{location}: {e}") from None
    except (TypeError, ValueError) as e:
        if not wrong:
            raise ConfigError(f"{location}: {e}") from None
    if wrong:
        raise wrong[0]
    return built


def _typed(kind: Any, value: Any, where: str, key: str) -> Any:
    """``value`` as field type ``kind`` (lists become tuples, ints floats); WrongType if it does not fit."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        if isinstance(value, dict):
            return _build(kind, value, where, key)
    elif origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _typed(option, value, where, key)
            except WrongType:
                pass
    elif kind in (tuple, list) or origin in (tuple, list):
        if isinstance(value, (list, tuple)):
            return _sequence(kind, value, where, key)
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and FLOAT_TEXT.fullmatch(value):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    else:
        return value  # not a config value type (e.g. Any): the class checks it
    raise WrongType(f"{where}: key {key} must be {_describe(kind)}, got {value!r}")


def _sequence(kind: Any, value: list | tuple, where: str, key: str) -> tuple | list:
    origin, args = typing.get_origin(kind) or kind, typing.get_args(kind)
    if not args:
        return origin(value)
    if origin is list or args[-1] is Ellipsis:
        item_types = [args[0]] * len(value)
    elif len(value) == len(args):
        item_types = list(args)
    else:
        raise WrongType(f"{where}: key {key} must be {_describe(kind)}, got {value!r}")
    return origin(_typed(t, v, where, f"{key}[{i}]") for i, (t, v) in enumerate(zip(item_types, value)))


def _describe(kind: Any) -> str:
    """What a value of annotation ``kind`` looks like in YAML, e.g. "a list of integers"."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return f"a mapping with keys among {', '.join(f.name for f in dataclasses.fields(kind))}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if kind in (tuple, list) or origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values"
        return f"a list of {PLURALS.get(args[0], 'values')}" if args else "a list"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(kind, str(kind))


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-YAML view of a dataclass (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(dataclasses.asdict(obj))


# A field added after a release carries ``metadata=ADDED``: stage records leave it out while it
# holds its default, so a run finished before the field existed stays up to date.
ADDED = {"added": True}


def record_dict(obj: Any) -> dict[str, Any]:
    """:func:`to_dict` without fields marked ``ADDED`` that hold their default (in nested configs too)."""

    def unset(value: Any) -> list[str]:
        return [f.name for f in dataclasses.fields(value)
                if f.metadata.get("added") and getattr(value, f.name) == f.default]

    def prune(value: Any, plain: Any) -> Any:
        if not dataclasses.is_dataclass(value):
            return plain
        drop = unset(value)
        return {k: prune(getattr(value, k), v) for k, v in plain.items() if k not in drop}

    return prune(obj, to_dict(obj))


def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path`` ({} when empty); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Read ``path`` into dataclass ``cls``; errors name the file."""
    return from_dict(cls, read_yaml(path), where=str(path))


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True)
