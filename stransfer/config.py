"""Frozen hyperparameter dataclasses: defaults in code, overridden by a TOML file, then by flags."""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from stransfer.errors import ArgumentTypeError, ConfigError, ConfigTypeError
from stransfer.fileio import file_problem

T = TypeVar("T")


def param(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] | None = None,
    check: Callable[[Any], Any] | None = None,
    parse: Callable[[str], Any] | None = None,
    help: str | None = None,
) -> Any:
    """A config field with its allowed range, checked wherever the value comes from; `check` parses values
    with a grammar of their own and raises ValueError saying what is wrong; `parse` reads a flag's text where
    the field's type alone would not (raising ValueError too). `help` is the one line a command line shows for
    the setting (its flag is generated from the field)."""
    meta = {"ge": ge, "gt": gt, "le": le, "choices": choices, "check": check, "parse": parse, "help": help}
    return dataclasses.field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return f"a list of {_PLURALS.get(typing.get_args(tp)[0], 'values')}"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """Return `value` as type `tp`, or raise TypeError; only lossless conversions are made."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        item_type = typing.get_args(tp)[0]
        if isinstance(value, str):  # a flag gives "relu1_2,relu2_2" or "150,80,40"
            return tuple(item_type(v.strip()) for v in value.split(",") if v.strip())
        if not isinstance(value, (list, tuple)):
            value = [value]  # TOML `iterations = 300` means one number for every scale
        return tuple(_coerce(v, item_type) for v in value)
    if origin in (types.UnionType, typing.Union):  # `float | None`
        if value is None:
            return None
        return _coerce(value, next(a for a in typing.get_args(tp) if a is not type(None)))
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    raise TypeError


def _fail(name: str, problem: str, where: str | None) -> ConfigError:
    """The error for a value of setting `name`: prefixed by where it came from (a TOML file, an environment
    variable), or, given as an argument, naming the setting alone so each front end can say it its own way (the
    CLI as its flag)."""
    return ConfigError(f"{where}: {problem}" if where else problem, key=None if where else name)


def _check_range(name: str, value: Any, meta: Mapping[str, Any], where: str | None) -> None:
    """Every number finite (TOML and float() both accept nan and inf), every list non-empty, every value in
    the field's range; one ConfigError naming the key and where the value came from otherwise."""
    if isinstance(value, tuple) and not value:
        raise _fail(name, f"'{name}' needs at least one value", where)
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if item is None:
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise _fail(name, f"'{name}' must be a finite number (got {item})", where)
        if "choices" in meta and item not in meta["choices"]:
            raise _fail(name, f"'{name}' must be one of {', '.join(meta['choices'])} (got {item!r})", where)
        if "ge" in meta and item < meta["ge"]:
            raise _fail(name, f"'{name}' must be >= {meta['ge']} (got {item})", where)
        if "gt" in meta and item <= meta["gt"]:
            raise _fail(name, f"'{name}' must be > {meta['gt']} (got {item})", where)
        if "le" in meta and item > meta["le"]:
            raise _fail(name, f"'{name}' must be <= {meta['le']} (got {item})", where)
        if "check" in meta:
            try:
                meta["check"](item)
            except ValueError as e:
                raise _fail(name, f"'{name}': {e}", where) from None


def check(name: str, value: T, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
          integer: bool = False) -> T:
    """A number (or tuple of numbers) that belongs to no config dataclass (size, threads, ...), held to the same
    rules as a field; returns the value. None (not given) passes. A name starting with $ is an environment
    variable."""
    kind = int if integer else float
    accepted = (int,) if integer else (int, float)
    for item in value if isinstance(value, tuple) else (value,):
        if item is not None and (isinstance(item, bool) or not isinstance(item, accepted)):
            raise ArgumentTypeError(f"'{name.lstrip('$').lower()}' must be {_type_name(kind)} "
                                    f"(got {type(item).__name__})")
    meta = {k: v for k, v in {"ge": ge, "gt": gt, "le": le}.items() if v is not None}
    if name.startswith("$"):
        _check_range(name.lstrip("$").lower(), value, meta, name)
    else:
        _check_range(name, value, meta, None)
    return value


# Engine settings fit in a few hundred bytes; the cap stops a huge (or endless) file before it is read.
MAX_CONFIG_BYTES = 1 << 20


def read_toml(path: Path) -> dict[str, Any]:
    problem = file_problem(path, MAX_CONFIG_BYTES)
    if problem:
        raise ConfigError(f"config file {path}: {problem}")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None


def build(cls: type[T], toml_path: Path | None = None, overrides: Mapping[str, Any] | None = None,
          defaults: Mapping[str, Any] | None = None) -> T:
    """Defaults of `cls`, replaced by `defaults` (a command's own, e.g. texture's), then the keys of
    `toml_path`, then `overrides` (arguments or flags; None means "not given")."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    sources: dict[str, str | None] = {}

    def take(key: str, value: Any, where: str | None) -> None:
        if key not in fields:
            raise _fail(key, f"unknown key '{key}' (known keys: {', '.join(fields)})", where)
        if isinstance(value, str) and "parse" in fields[key].metadata:
            try:
                value = fields[key].metadata["parse"](value)
            except ValueError as e:
                raise _fail(key, f"'{key}': {e}", where) from None
        try:
            values[key] = _coerce(value, hints[key])
        except (TypeError, ValueError) as e:
            problem = _fail(key, f"'{key}' must be {_type_name(hints[key])} (got {value!r})", where)
            if where is None and isinstance(e, TypeError):
                raise ConfigTypeError(str(problem), key=key) from None
            raise problem from None
        sources[key] = where

    for key, value in (defaults or {}).items():
        take(key, value, f"{cls.__name__} default")
    if toml_path is not None:
        for key, value in read_toml(toml_path).items():
            take(key, value, str(toml_path))
    for key, value in (overrides or {}).items():
        if value is not None:
            take(key, value, None)

    for key, value in values.items():
        _check_range(key, value, fields[key].metadata, sources[key])
    return cls(**values)


def from_text(cls: type, key: str, text: str) -> Any:
    """The value of setting `key` of `cls` written as text (a flag's, or a sweep's KEY=V), by the field's type;
    build() then checks it as any value. An unknown key or unreadable text is a ConfigError naming the key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if key not in fields:
        raise _fail(key, f"unknown key '{key}' (known keys: {', '.join(fields)})", None)
    tp = hints[key]
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    try:
        if tp in (int, float):
            return tp(text)
        if tp is bool:
            return {"true": True, "false": False}[text.strip().lower()]
    except (ValueError, KeyError):
        raise _fail(key, f"'{key}' must be {_type_name(tp)} (got {text!r})", None) from None
    return text  # strings, and lists and parsed fields, which build() reads from text itself


def with_defaults(cls: type[T], name: str, **defaults: Any) -> type[T]:
    """`cls` under another name with other defaults for some fields, their ranges and help kept: the settings of
    a command that uses an engine its own way (a texture is Gatys with no content), shown with its defaults."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    redeclared = [(key, hints[key], dataclasses.field(default=value, metadata=fields[key].metadata))
                  for key, value in defaults.items()]
    made = dataclasses.make_dataclass(name, redeclared, bases=(cls,), frozen=True)
    made.__module__ = cls.__module__
    return made


def each(values: tuple[T, ...], count: int) -> tuple[T, ...]:
    """A list field's `count` values: the one value given repeated, or the values one per item as given (the
    caller has checked the count)."""
    return values * count if len(values) == 1 else values


def as_dict(config: Any) -> dict[str, Any]:
    """The config as plain TOML/JSON-friendly values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
