"""Type checking of decoded msgpack values against dataclass annotations.

Pure Python, no msgpack: the codec unpacks bytes into plain values and this
module turns a plain mapping into a frozen dataclass, checking every field
against its annotation.  Supported annotations are the msgpack-native ones:
``str``, ``int``, ``float``, ``bool``, ``bytes``, ``None``, ``Any`` (any
msgpack value), ``X | None``, ``list[X]``, ``dict[str, X]`` and nested
dataclasses.  Anything else is a programming error found at import time.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from protocol.errors import ProtocolError

T = TypeVar("T")
Checker = Callable[[Any, str], Any]

#: Reserved key that names a registered payload class inside a map.
TAG_KEY = "__type__"


def _fail(path: str, expected: str, value: Any) -> ProtocolError:
    return ProtocolError(f"{path}: expected {expected}, got {type(value).__name__}")


def _scalar(kind: type, name: str) -> Checker:
    def check(value: Any, path: str) -> Any:
        if type(value) is not kind:
            raise _fail(path, name, value)
        return value

    return check


def _check_float(value: Any, path: str) -> Any:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise _fail(path, "float", value)


def _check_none(value: Any, path: str) -> Any:
    if value is not None:
        raise _fail(path, "nil", value)
    return None


MAX_DEPTH = 64
_NATIVE = (str, bool, float, bytes, type(None))


def check_native(value: Any, path: str = "value", depth: int = 0) -> Any:
    """Accept only msgpack-native values: str-keyed maps, lists, scalars, 64-bit ints.

    Used on both sides: decoding (msgpack turns ext -1 into ``Timestamp``
    without asking) and encoding (a task's output must decode at the other end).
    """
    kind = type(value)
    if kind in _NATIVE:
        return value
    if kind is int:
        if not -(2**63) <= value < 2**64:
            raise ProtocolError(f"{path}: integer out of 64-bit range")
        return value
    if depth >= MAX_DEPTH:
        raise ProtocolError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if kind is list or kind is tuple:
        for i, item in enumerate(value):
            check_native(item, f"{path}[{i}]", depth + 1)
        return value
    if kind is dict:
        for k, item in value.items():
            if type(k) is not str:
                raise ProtocolError(f"{path}: map key {k!r} is not a string")
            check_native(item, f"{path}.{k}", depth + 1)
        return value
    raise ProtocolError(f"{path}: {kind.__name__} is not a msgpack-native value")


def _check_any(value: Any, path: str) -> Any:
    return check_native(value, path)


def _identity(value: Any, path: str) -> Any:
    return value


_SCALARS: dict[Any, Checker] = {
    str: _scalar(str, "str"),
    int: _scalar(int, "int"),
    bool: _scalar(bool, "bool"),
    bytes: _scalar(bytes, "bin"),
    float: _check_float,
    type(None): _check_none,
    Any: _check_any,
}


def _names(names: list[str], most: int = 5, width: int = 40) -> str:
    """Peer-chosen names, bounded: an error never echoes unbounded peer data."""
    shown = [n if len(n) <= width else n[: width - 3] + "..." for n in names[:most]]
    more = f" (+{len(names) - most} more)" if len(names) > most else ""
    return ", ".join(shown) + more


class Schema:
    """Compiles dataclass annotations into checkers, once per class.

    ``tagged`` schemas expect nested dataclasses as maps carrying ``TAG_KEY``
    (application payloads); untagged ones (wire messages) know the nested
    class from the annotation alone.
    """

    def __init__(self, *, tagged: bool, tag_of: Callable[[type], str] | None = None) -> None:
        self._tagged = tagged
        self._tag_of = tag_of
        self._fields: dict[type, tuple[tuple[str, Checker, bool], ...]] = {}

    def build(self, cls: type[T], mapping: Any, path: str = "") -> T:
        """Return ``cls(**mapping)`` after checking names and types of every field."""
        where = path or cls.__name__
        if not isinstance(mapping, Mapping):
            raise _fail(where, "map", mapping)
        spec = self._spec(cls)
        kwargs: dict[str, Any] = {}
        seen = 0
        for name, check, required in spec:
            if name in mapping:
                kwargs[name] = check(mapping[name], f"{where}.{name}")
                seen += 1
            elif required:
                raise ProtocolError(f"{where}: missing field {name!r}")
        extra = len(mapping) - seen - (1 if self._tagged and TAG_KEY in mapping else 0)
        if extra:
            known = {name for name, _, _ in spec} | ({TAG_KEY} if self._tagged else set())
            unknown = sorted(str(k) for k in mapping if k not in known)
            if unknown:
                raise ProtocolError(f"{where}: unknown field(s) {_names(unknown)}")
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"{where}: {exc}") from None

    def compile(self, cls: type) -> None:
        """Build the checkers of ``cls`` now: ``TypeError`` for an unsupported field type."""
        self._spec(cls)

    def _spec(self, cls: type) -> tuple[tuple[str, Checker, bool], ...]:
        spec = self._fields.get(cls)
        if spec is None:
            hints = typing.get_type_hints(cls)
            spec = tuple(
                (
                    f.name,
                    self.checker(hints[f.name]),
                    f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                )
                for f in dataclasses.fields(cls)
                if f.init
            )
            self._fields[cls] = spec
        return spec

    def checker(self, tp: Any) -> Checker:
        """Return a function ``(value, path) -> value`` that validates ``tp``."""
        if tp is Any and self._tagged:
            return _identity  # payload values were checked while their records were rebuilt
        if tp in _SCALARS:
            return _SCALARS[tp]
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (types.UnionType, typing.Union):
            return self._union([self.checker(a) for a in args], tp)
        if origin is list:
            return self._list(self.checker(args[0]))
        if origin is dict:
            if args[0] is not str:
                raise TypeError(f"map keys must be str in {tp}")
            return self._dict(self.checker(args[1]))
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self._nested(tp)
        raise TypeError(f"annotation {tp!r} is not a msgpack-native type")

    @staticmethod
    def _union(checks: list[Checker], tp: Any) -> Checker:
        def check(value: Any, path: str) -> Any:
            for one in checks:
                try:
                    return one(value, path)
                except ProtocolError:
                    continue
            raise ProtocolError(f"{path}: expected {tp}, got {type(value).__name__}")

        return check

    @staticmethod
    def _list(item: Checker) -> Checker:
        def check(value: Any, path: str) -> Any:
            if type(value) is not list:
                raise _fail(path, "array", value)
            return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

        return check

    @staticmethod
    def _dict(item: Checker) -> Checker:
        def check(value: Any, path: str) -> Any:
            if type(value) is not dict:
                raise _fail(path, "map", value)
            out = {}
            for k, v in value.items():
                if type(k) is not str:
                    raise _fail(f"{path} key", "str", k)
                out[k] = item(v, f"{path}.{k}")
            return out

        return check

    def _nested(self, cls: type) -> Checker:
        def check(value: Any, path: str) -> Any:
            if isinstance(value, cls):
                return value
            if self._tagged:
                if not isinstance(value, dict) or self._tag_of is None:
                    raise _fail(path, cls.__name__, value)
                if value.get(TAG_KEY) != self._tag_of(cls):
                    raise ProtocolError(f"{path}: expected a {cls.__name__} record")
            return self.build(cls, value, path)

        return check
