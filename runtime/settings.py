"""One declaration per setting: its default, help text, environment variable and limits.

A process's configuration is a frozen dataclass whose fields are declared with
``setting()``.  From that one declaration:

- ``options(Config)`` makes the click options of a command (each shows its
  environment variable and default in ``--help``);
- ``Config(**values)`` checks ranges and choices (``check(self)`` in
  ``__post_init__``), so a config built in Python is held to the same limits
  as one parsed from the command line;
- ``table(Config)`` lists the environment variables for the README.

Nothing else restates a default.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

ENV_PREFIX = "TASKMESH_"


@dataclass(frozen=True, slots=True)
class Meta:
    """What ``setting()`` records about a field."""

    help: str
    env: str | None
    flag: str | None
    low: float | None
    high: float | None
    choices: tuple[str, ...] | None
    cli: bool
    required: bool
    default_text: str | None
    metavar: str | None


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    env: str | None = None,
    flag: str | None = None,
    low: float | None = None,
    high: float | None = None,
    choices: Sequence[str] | None = None,
    cli: bool = True,
    required: bool = False,
    default_factory: Callable[[], Any] | None = None,
    default_text: str | None = None,
    metavar: str | None = None,
) -> Any:
    """Declare a config field.

    ``env`` defaults to ``TASKMESH_<FIELD>`` and ``flag`` to ``--<field>``;
    ``low``/``high`` bound numbers (inclusive); ``required`` makes the command
    line insist on a value even where Python callers get the default;
    ``cli=False`` keeps a setting out of the command line.
    """
    meta = Meta(
        help=help,
        env=env,
        flag=flag,
        low=low,
        high=high,
        choices=tuple(choices) if choices is not None else None,
        cli=cli,
        required=required,
        default_text=default_text,
        metavar=metavar,
    )
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={"setting": meta})
    return dataclasses.field(default=default, metadata={"setting": meta})


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting, resolved: field name, type, default and metadata."""

    name: str
    type: Any
    default: Any
    meta: Meta

    @property
    def env(self) -> str:
        return self.meta.env or ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return self.meta.flag or "--" + self.name.replace("_", "-")

    @property
    def multiple(self) -> bool:
        return typing.get_origin(self.type) is tuple

    @property
    def base(self) -> Any:
        """The scalar type: ``str`` for ``str``, ``str | None`` and ``tuple[str, ...]``."""
        args = [a for a in typing.get_args(self.type) if a is not type(None) and a is not ...]
        return args[0] if args else self.type


def specs(cls: type) -> list[Spec]:
    """The settings of config class ``cls``: most derived class's own settings first."""
    hints = typing.get_type_hints(cls)
    depth: dict[str, int] = {}
    for i, klass in reversed(list(enumerate(cls.__mro__))):
        for name in vars(klass).get("__annotations__", {}):
            depth[name] = i  # the most derived class that declares it wins
    out: list[Spec] = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("setting")
        if meta is None:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory
        else:
            default = dataclasses.MISSING
        out.append(Spec(f.name, hints[f.name], default, meta))
    return sorted(out, key=lambda s: depth.get(s.name, 0))


def check(config: Any) -> None:
    """Refuse values outside a setting's range or choices (``ValueError`` naming the option)."""
    for spec in specs(type(config)):
        value = getattr(config, spec.name)
        values = value if spec.multiple else (value,)
        for one in values:
            _check_one(spec, one)


def _check_one(spec: Spec, value: Any) -> None:
    meta = spec.meta
    if value is None:
        return
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{spec.flag}: not a number")
    if meta.low is not None and value < meta.low:
        raise ValueError(f"{spec.flag}: {value} is below {meta.low:g}")
    if meta.high is not None and value > meta.high:
        raise ValueError(f"{spec.flag}: {value} is above {meta.high:g}")
    if meta.choices is not None and value not in meta.choices:
        raise ValueError(f"{spec.flag}: {value!r} is not one of {', '.join(meta.choices)}")


def _click_type(spec: Spec) -> Any:
    meta, base = spec.meta, spec.base
    if meta.choices is not None:
        return click.Choice(meta.choices, case_sensitive=False)
    if base is int:
        return click.IntRange(
            None if meta.low is None else int(meta.low),
            None if meta.high is None else int(meta.high),
        )
    if base is float:
        return click.FloatRange(meta.low, meta.high)
    return click.STRING


def option(spec: Spec) -> Callable[[F], F]:
    """The click option of one setting."""
    kwargs: dict[str, Any] = {
        "envvar": spec.env,
        "show_envvar": True,
        "help": spec.meta.help,
    }
    if spec.meta.metavar:
        kwargs["metavar"] = spec.meta.metavar
    decls = [spec.flag, spec.name]
    if spec.base is bool:
        decls = [f"{spec.flag}/--no-{spec.flag[2:]}", spec.name]
        kwargs["default"] = spec.default
        kwargs["show_default"] = True
        return click.option(*decls, **kwargs)
    kwargs["type"] = _click_type(spec)
    if spec.multiple:
        kwargs["multiple"] = True
    if spec.meta.required:
        kwargs["required"] = True
    elif spec.default is not dataclasses.MISSING:
        if callable(spec.default):
            kwargs["default"] = None  # filled by the dataclass's factory
            kwargs["show_default"] = spec.meta.default_text or True
        else:
            kwargs["default"] = spec.default
            if spec.default not in (None, (), ""):
                kwargs["show_default"] = spec.meta.default_text or True
    else:
        kwargs["required"] = True
    return click.option(*decls, **kwargs)


def options(cls: type) -> Callable[[F], F]:
    """Decorate a click command with one option per command-line setting of ``cls``."""

    def decorate(fn: F) -> F:
        for spec in reversed(specs(cls)):
            if spec.meta.cli:
                fn = option(spec)(fn)
        return fn

    return decorate


T = TypeVar("T")


def build(cls: type[T], values: dict[str, Any]) -> T:
    """Make ``cls`` from parsed options (names not settings of ``cls`` are ignored).

    An option left unset whose setting has a default factory gets the factory's value.
    """
    kwargs: dict[str, Any] = {}
    for spec in specs(cls):
        if spec.name not in values:
            continue
        value = values[spec.name]
        if value is None and callable(spec.default):
            continue
        kwargs[spec.name] = tuple(value) if spec.multiple else value
    return cls(**kwargs)


def table(cls: type) -> list[tuple[str, str, str, str]]:
    """``(variable, option, default, meaning)`` for each command-line setting of ``cls``."""
    rows = []
    for spec in specs(cls):
        if not spec.meta.cli:
            continue
        if spec.meta.default_text:
            default = spec.meta.default_text
        elif spec.default is dataclasses.MISSING or spec.meta.required:
            default = "(required)"
        else:
            default = "" if spec.default in (None, ()) else str(spec.default)
        rows.append((spec.env, spec.flag, default, spec.meta.help))
    return rows


def from_cli(cls: type[T], values: dict[str, Any]) -> T:
    """``build`` for a click command: a value the config refuses is a usage error."""
    try:
        return build(cls, values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
