"""Fast paths for the codec, compiled once per record class from its annotations.

For each wire record (message or nested record) two plain functions are
generated, the way ``dataclasses`` generates ``__init__``:

- a *builder* that turns a decoded msgpack map into the record, checking
  every field's type inline (``type(v) is str``), with no exception raised on
  valid input; on anything it does not accept it returns ``FAIL`` and the
  caller runs ``Schema.build`` (the slow path) to say precisely what is wrong;
- an *encoder* that turns the record into plain maps and lists for msgpack.

The builder accepts exactly what ``Schema.build`` accepts: the tests check
both on the same inputs.  Supported annotations are those of ``schema.py``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

from protocol.errors import ProtocolError
from protocol.schema import check_native

FAIL: Any = object()
_MISSING: Any = object()
_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})

Builder = Callable[[Any], Any]
Encoder = Callable[[Any], Any]


def _is_record(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _native_out(value: Any) -> Any:
    """An ``Any`` value being encoded: refused (code ``encode``) unless msgpack-native."""
    try:
        return check_native(value)
    except ProtocolError as exc:
        raise ProtocolError(str(exc), "encode") from None


def _any_ok(value: Any) -> bool:
    """A decoded ``Any`` value: scalars are fine as msgpack made them; containers are walked."""
    try:
        check_native(value)
    except ValueError:
        return False
    return True


class _Compiler:
    def __init__(self) -> None:
        self.builders: dict[type, Builder] = {}
        self.encoders: dict[type, Encoder] = {}

    def builder(self, cls: type) -> Builder:
        if cls not in self.builders:
            self._compile(cls)
        return self.builders[cls]

    def encoder(self, cls: type) -> Encoder:
        if cls not in self.encoders:
            self._compile(cls)
        return self.encoders[cls]

    def _compile(self, cls: type) -> None:
        hints = typing.get_type_hints(cls)
        fields = [f for f in dataclasses.fields(cls) if f.init]
        env: dict[str, Any] = {
            "FAIL": FAIL,
            "MISSING": _MISSING,
            "cls": cls,
            "any_ok": _any_ok,
            "native": _native_out,
            "SCALARS": _SCALARS,
        }
        # Placeholders first: records may nest (a builder calls the nested one by name).
        self.builders[cls] = lambda m: self.builders[cls](m)
        self.encoders[cls] = lambda o: self.encoders[cls](o)
        build_lines = ["def build(m):", "    if type(m) is not dict: return FAIL", "    seen = 0"]
        enc_items = []
        for i, f in enumerate(fields):
            tp = hints[f.name]
            var = f"f{i}"
            build_lines.append(f"    v = m.get({f.name!r}, MISSING)")
            if f.default is not dataclasses.MISSING:
                env[f"D{i}"] = f.default
                build_lines.append(f"    if v is MISSING: {var} = D{i}")
            elif f.default_factory is not dataclasses.MISSING:
                env[f"DF{i}"] = f.default_factory
                build_lines.append(f"    if v is MISSING: {var} = DF{i}()")
            else:
                build_lines.append("    if v is MISSING: return FAIL")
            build_lines.append("    else:")
            build_lines.extend("        " + line for line in self._check(tp, "v", env, i))
            build_lines.append(f"        {var} = v")
            build_lines.append("        seen += 1")
            enc_items.append(f"{f.name!r}: {self._encode(tp, f'o.{f.name}', env, i)}")
        build_lines.append("    if seen != len(m): return FAIL")
        build_lines += self._construct(cls, fields, env)
        enc_src = "def encode(o):\n    return {" + ", ".join(enc_items) + "}"
        namespace: dict[str, Any] = {}
        where = f"<taskmesh codec: {cls.__name__}>"
        exec(compile("\n".join(build_lines), where, "exec"), env, namespace)
        exec(compile(enc_src, where, "exec"), env, namespace)
        self.builders[cls] = namespace["build"]
        self.encoders[cls] = namespace["encode"]

    @staticmethod
    def _construct(
        cls: type, fields: list[dataclasses.Field[Any]], env: dict[str, Any]
    ) -> list[str]:
        """Lines that make the record from the checked ``f0``, ``f1`` ... and return it.

        A slotted record is filled through its slots and then checked by its
        ``__post_init__``, as ``__init__`` would do, without ``__init__``'s
        per-field ``object.__setattr__`` (frozen) calls.
        """
        if "__slots__" not in vars(cls) or any(not f.init for f in dataclasses.fields(cls)):
            kwargs = ", ".join(f"{f.name}=f{i}" for i, f in enumerate(fields))
            return [
                "    try:",
                f"        return cls({kwargs})",
                "    except (TypeError, ValueError):",
                "        return FAIL",
            ]
        env["new"] = object.__new__
        lines = ["    o = new(cls)"]
        for i, f in enumerate(fields):
            env[f"S{i}"] = getattr(cls, f.name).__set__
            lines.append(f"    S{i}(o, f{i})")
        post = getattr(cls, "__post_init__", None)
        if post is None:
            return [*lines, "    return o"]
        env["post"] = post
        return [
            *lines,
            "    try:",
            "        post(o)",
            "    except (TypeError, ValueError):",
            "        return FAIL",
            "    return o",
        ]

    def _check(self, tp: Any, v: str, env: dict[str, Any], i: int) -> list[str]:
        """Lines that validate (and may convert) ``v`` in place, or ``return FAIL``."""
        if tp is str or tp is int or tp is bool or tp is bytes:
            env[tp.__name__] = tp
            return [f"if type({v}) is not {tp.__name__}: return FAIL"]
        if tp is float:
            return [
                f"if type({v}) is int: {v} = float({v})",
                f"elif type({v}) is not float: return FAIL",
            ]
        if tp is type(None):
            return [f"if {v} is not None: return FAIL"]
        if tp is Any:
            return [f"if type({v}) not in SCALARS and not any_ok({v}): return FAIL"]
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (types.UnionType, typing.Union):
            rest = [a for a in args if a is not type(None)]
            if len(args) == 2 and len(rest) == 1:
                inner = self._check(rest[0], v, env, i)
                return [f"if {v} is not None:", *("    " + line for line in inner)]
        if origin is list:
            item = args[0]
            if item in (str, int, bool, bytes):
                env[item.__name__] = item
                return [
                    f"if type({v}) is not list: return FAIL",
                    f"for x in {v}:",
                    f"    if type(x) is not {item.__name__}: return FAIL",
                ]
            if isinstance(item, type) and dataclasses.is_dataclass(item):
                name = f"B{i}"
                env[name] = self._lazy_builder(item)
                return [
                    f"if type({v}) is not list: return FAIL",
                    f"{v} = [{name}(x) for x in {v}]",
                    f"for x in {v}:",
                    "    if x is FAIL: return FAIL",
                ]
        if origin is dict and args[0] is str and args[1] in (str, int, bool):
            env[args[1].__name__] = args[1]
            return [
                f"if type({v}) is not dict: return FAIL",
                f"for k, x in {v}.items():",
                f"    if type(k) is not str or type(x) is not {args[1].__name__}: return FAIL",
            ]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            name = f"N{i}"
            env[name] = self._lazy_builder(tp)
            return [f"{v} = {name}({v})", f"if {v} is FAIL: return FAIL"]
        # Anything else: no fast path; the slow path decides.
        return ["return FAIL"]

    def _encode(self, tp: Any, expr: str, env: dict[str, Any], i: int) -> str:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (types.UnionType, typing.Union):
            rest = [a for a in args if a is not type(None)]
            if len(rest) == 1 and _is_record(rest[0]):
                name = f"E{i}"
                env[name] = self._lazy_encoder(rest[0])
                return f"(None if {expr} is None else {name}({expr}))"
            return expr
        if origin is list and _is_record(args[0]):
            name = f"E{i}"
            env[name] = self._lazy_encoder(args[0])
            return f"[{name}(x) for x in {expr}]"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            name = f"E{i}"
            env[name] = self._lazy_encoder(tp)
            return f"{name}({expr})"
        if tp is Any:  # refuse now what the receiver would refuse (e.g. int map keys)
            return f"({expr} if type({expr}) in SCALARS else native({expr}))"
        return expr  # scalars, lists and maps of scalars travel as they are

    def _lazy_builder(self, cls: type) -> Builder:
        if cls in self.builders:
            return self.builders[cls]
        self._compile(cls)
        return self.builders[cls]

    def _lazy_encoder(self, cls: type) -> Encoder:
        if cls in self.encoders:
            return self.encoders[cls]
        self._compile(cls)
        return self.encoders[cls]


_COMPILER = _Compiler()
#: Every compiled encoder by record class (filled as classes are compiled).
ENCODERS = _COMPILER.encoders


def builder(cls: type) -> Builder:
    """``build(mapping) -> record or FAIL`` for record class ``cls``."""
    return _COMPILER.builder(cls)


def encoder(cls: type) -> Encoder:
    """``encode(record) -> plain map`` for record class ``cls``."""
    return _COMPILER.encoder(cls)
