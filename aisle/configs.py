"""Load frozen dataclass configs from TOML plus ``key=value`` overrides (no exec, no globals)."""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from aisle.errors import AisleError

T = TypeVar("T")


def _coerce(value: Any, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or value == "none":
            return None
        return _coerce(value, args[0], name)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise AisleError(f"config key {name!r}: {value!r} is not one of {allowed}")
        return value
    if origin is tuple:
        (inner, *_) = typing.get_args(tp) or (str,)
        if not isinstance(value, (str, list, tuple)):
            raise AisleError(f"config key {name!r}: {value!r} is not a list; write it as "
                             "[a, b] in TOML or a,b in an override")
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, inner, name) for v in items)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise AisleError(f"config key {name!r} must be a table")
        return from_dict(tp, value, prefix=f"{name}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise AisleError(f"config key {name!r}: {value!r} is not a boolean")
    if tp in (int, float, str):
        # Text is parsed: a command-line override or AISLE_* variable (serving/config.py) is
        # text, and so is a quoted TOML value (`port = "8001"` reads as 8001; "2.7" for an
        # int is refused). Any other typed value of the wrong type is refused, not cast:
        # `epochs = 2.7` would become 2, `batch_size = true` 1, and a list its repr.
        if not isinstance(value, str) and not _is_instance(value, tp):
            raise AisleError(
                f"config key {name!r}: {value!r} is a {type(value).__name__}, not {tp.__name__}"
            )
        try:
            return tp(value)
        except (TypeError, ValueError) as e:
            raise AisleError(f"config key {name!r}: {value!r} is not of type {tp.__name__}") from e
    return value


def _is_instance(value: Any, tp: type) -> bool:
    if isinstance(value, bool):
        return False  # bool is an int to Python, never to a config
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp)


def from_dict(cls: type[T], raw: dict[str, Any], prefix: str = "") -> T:
    """Build ``cls`` from a (possibly nested) dict, rejecting unknown keys (a key ``cls``
    lists in its ``RENAMED`` class variable, old key -> what replaced it, says so)."""
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - fields)
    renamed: Mapping[str, str] = getattr(cls, "RENAMED", {})
    for k in unknown:
        if k in renamed:
            raise AisleError(f"config key {prefix + k!r} is gone: {renamed[k]}")
    if unknown:
        raise AisleError(
            f"unknown config key(s) {[prefix + k for k in unknown]}; known: {sorted(fields)}"
        )
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in raw.items():
        default = defaults[k].default
        nested = dataclasses.is_dataclass(default) and not isinstance(default, type)
        if isinstance(v, dict) and nested:
            # A partial table overrides only the keys it names, on top of the field's default.
            v = {**dataclasses.asdict(default), **v}  # type: ignore[arg-type]
        kwargs[k] = _coerce(v, hints[k], prefix + k)
    try:
        return cls(**kwargs)
    except AisleError as e:
        if not prefix:
            raise
        # A nested config checks itself without knowing where it sits ("min_grade must be
        # >= 0"): say which table, since step1 and step2 share every key.
        raise type(e)(f"config table {prefix.rstrip('.')!r}: {e}") from e


def _set_path(raw: dict[str, Any], dotted: str, value: str) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise AisleError(f"override {dotted!r}: {p!r} is not a table")
    node[leaf] = value


def load_config(cls: type[T], path: Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults of ``cls``, then the TOML file at ``path``, then ``key=value`` overrides.

    Nested keys use dots: ``step1.epochs=2``.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise AisleError(f"config file {path} does not exist") from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise AisleError(f"config file {path} is not valid TOML: {e}") from e
        except OSError as e:  # a directory, no permission
            raise AisleError(f"config file {path} cannot be read ({e})") from e
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AisleError(f"override {item!r} must look like key=value")
        _set_path(raw, key.strip(), value.strip())
    return from_dict(cls, raw)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
