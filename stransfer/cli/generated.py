"""Command-line options generated from the config dataclasses, so a new engine or trainer adds no CLI code: each
field is a flag named after it, with the help text of its metadata (config.param) and its default shown."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

import typer


def field_help(config_type: type, name: str) -> str | None:
    """A field's help, from the nearest class that gave one: a subclass that only changes a default keeps the
    base class's words."""
    for cls in config_type.__mro__:
        if dataclasses.is_dataclass(cls):
            found = {f.name: f for f in dataclasses.fields(cls)}.get(name)
            if found is not None and "help" in found.metadata:
                return found.metadata["help"]
    return None


def _flag_type(tp: Any) -> type:
    """The type a flag parses to: lists are given comma-separated and parsed by config.build."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is tuple:
        return str
    return tp if tp in (int, float, str, bool) else str


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _choice_type(name: str, values: Iterable[str]) -> type:
    from stransfer.cli.options import choices

    return choices("".join(w.capitalize() for w in name.split("_")), values)


def field_option(owners: list[tuple[str, type]], name: str, panel: str | None = None) -> inspect.Parameter:
    """The flag of setting `name`, held by every config type of `owners` ((label, type): one engine or trainer, or
    several engines): its help from the first that gives one, its choices, and the default of each."""
    types_ = [config_type for _, config_type in owners]
    found = {f.name: f for f in dataclasses.fields(types_[0])}[name]
    words = [next((h for h in (field_help(c, name) for c in types_) if h), None)
             or name.replace("_", " ").capitalize() + "."]
    defaults = [(label, next(f.default for f in dataclasses.fields(c) if f.name == name)) for label, c in owners]
    shown = [(label, _shown(d)) for label, d in defaults if d is not dataclasses.MISSING and d is not None]
    if shown and len(shown) == len(defaults) and len({s for _, s in shown}) == 1:
        words.append(f"(default {shown[0][1]})")
    elif shown:
        words.append("(default " + "; ".join(f"{label} {s}" for label, s in shown) + ")")
    flag_type: Any = _flag_type(typing.get_type_hints(types_[0])[name])
    if "choices" in found.metadata:
        flag_type = _choice_type(name, found.metadata["choices"])
    option = typer.Option(help=" ".join(words), rich_help_panel=panel, show_default=False)
    return parameter(name, Annotated[flag_type | None, option])  # type: ignore[valid-type]


def config_options(config_type: type, panel: str | None = None, skip: Iterable[str] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per field of `config_type` (but `skip`), None when not given, so a TOML file's
    value is not replaced by a default."""
    return [field_option([(config_type.__name__, config_type)], f.name, panel)
            for f in dataclasses.fields(config_type) if f.name not in skip]


def shared_options(owners: Mapping[str, type], everyone: str,
                   skip: Mapping[str, Iterable[str]] | None = None) -> list[inspect.Parameter]:
    """One flag per setting of any of `owners` (name -> config type, e.g. the engines), in their order, on a help
    panel naming the owners that take it (`everyone` when all do); options.given refuses it for the others.
    `skip`: per owner, settings it takes no flag for."""
    holders: dict[str, list[str]] = {}
    for owner, config_type in owners.items():
        for f in dataclasses.fields(config_type):
            if f.name not in (skip or {}).get(owner, ()):
                holders.setdefault(f.name, []).append(owner)
    return [field_option([(n, owners[n]) for n in names], name,
                         everyone if len(names) == len(owners) else "-m " + ", ".join(names))
            for name, names in holders.items()]


def parameter(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def with_choices(function: Callable[..., None], name: str, values: Iterable[str]) -> Callable[..., None]:
    """`function` as a command whose enum parameter `name` chooses among `values` as they are when the app is
    built (a registry's names), keeping its flags, help and default."""
    from stransfer.cli.options import choices

    signature = inspect.signature(function, eval_str=True)
    old = signature.parameters[name]
    enum_type, *extras = typing.get_args(old.annotation)
    fresh = choices(enum_type.__name__, values)
    annotation = Annotated[(fresh, *extras)]  # type: ignore[valid-type]
    params = [p.replace(annotation=annotation, default=fresh(old.default.value)) if p.name == name else p
              for p in signature.parameters.values()]
    return command(function, params, function.__doc__ or "")


def command(run: Callable[..., None], parameters: list[inspect.Parameter], doc: str) -> Callable[..., None]:
    """`run(**values)` as a Typer command taking `parameters` (Typer reads the signature and the docstring)."""

    def generated(**values: Any) -> None:
        run(**values)

    generated.__name__ = run.__name__

    generated.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    generated.__annotations__ = {p.name: p.annotation for p in parameters}
    generated.__doc__ = doc
    return generated
