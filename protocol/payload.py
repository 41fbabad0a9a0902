"""Application payloads: ``dumps``/``loads`` in place of pickle.

A payload is any msgpack-native value, plus instances of dataclasses that the
application registered.  A registered instance travels as a map of its fields
with ``"__type__": TAG``; ``loads`` rebuilds only registered classes, checks
every field against its annotation, and raises ``ProtocolError`` for anything
else.  Nothing is ever imported or executed by name, unlike pickle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

from protocol.codec import pack, unpack
from protocol.constants import MAX_MESSAGE_BYTES
from protocol.errors import ProtocolError
from protocol.schema import MAX_DEPTH, TAG_KEY, Schema, check_native

T = TypeVar("T")

_BY_TAG: dict[str, type] = {}
_TAG_OF: dict[type, str] = {}


def _tag_of(cls: type) -> str:
    tag = _TAG_OF.get(cls)
    if tag is None:
        raise ProtocolError(f"{cls.__name__} is not registered; call protocol.register() on it")
    return tag


_SCHEMA = Schema(tagged=True, tag_of=_tag_of)


def register(cls: type[T], name: str | None = None) -> type[T]:
    """Allow instances of dataclass ``cls`` in payloads under tag ``name``.

    The tag defaults to the class name; both ends must register the same tag.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass")
    tag = name or cls.__name__
    other = _BY_TAG.get(tag)
    if other is not None and other is not cls:
        raise ValueError(f"payload tag {tag!r} is already registered for {other!r}")
    _SCHEMA.compile(cls)  # fail now, not on the first message, for unsupported fields
    _BY_TAG[tag] = cls
    _TAG_OF[cls] = tag
    return cls


@overload
def dataclass(cls: type[T], /) -> type[T]: ...
@overload
def dataclass(cls: None = None, /, **kwargs: Any) -> Callable[[type[T]], type[T]]: ...
@dataclass_transform()
def dataclass(cls: type[T] | None = None, /, **kwargs: Any) -> Any:
    """``dataclasses.dataclass`` that also registers the class for payloads.

    Porting a Ceylon program: replace ``from dataclasses import dataclass``
    with ``from protocol import dataclass`` and ``pickle`` with ``protocol``.
    """

    def wrap(klass: type[T]) -> type[T]:
        return register(dataclasses.dataclass(**kwargs)(klass))

    return wrap if cls is None else wrap(cls)


def _to_plain(value: Any, depth: int = 0) -> Any:
    if depth >= MAX_DEPTH:
        raise ProtocolError(f"value nested deeper than {MAX_DEPTH} levels")
    depth += 1
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        tag = _TAG_OF.get(type(value))
        if tag is None:
            raise ProtocolError(
                f"{type(value).__name__} is not registered; call protocol.register() on it",
                "unregistered",
            )
        out = {f.name: _to_plain(getattr(value, f.name), depth) for f in dataclasses.fields(value)}
        out[TAG_KEY] = tag
        return out
    if isinstance(value, list | tuple):
        return [_to_plain(v, depth) for v in value]
    if isinstance(value, dict):
        if TAG_KEY in value:
            raise ProtocolError(f"map key {TAG_KEY!r} is reserved for registered classes")
        for key in value:
            if type(key) is not str:
                raise ProtocolError(f"map key {key!r} is not a string (msgpack maps need str keys)")
        return {k: _to_plain(v, depth) for k, v in value.items()}
    return check_native(value)


def _from_plain(value: Any, path: str, depth: int = 0) -> Any:
    if depth >= MAX_DEPTH:
        raise ProtocolError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    depth += 1
    if type(value) is list:
        return [_from_plain(v, f"{path}[{i}]", depth) for i, v in enumerate(value)]
    if type(value) is not dict:
        return check_native(value, path or "value")  # scalars; msgpack's Timestamp is refused
    if TAG_KEY not in value:
        for key in value:
            if type(key) is not str:
                raise ProtocolError(f"{path}: map key {key!r} is not a string")
        return {k: _from_plain(v, f"{path}.{k}", depth) for k, v in value.items()}
    tag = value[TAG_KEY]
    cls = _BY_TAG.get(tag) if type(tag) is str else None
    if cls is None:
        raise ProtocolError(f"{path}: unregistered payload type {str(tag)[:40]!r}", "unregistered")
    fields = {k: _from_plain(v, f"{path}.{k}", depth) for k, v in value.items() if k != TAG_KEY}
    fields[TAG_KEY] = tag
    return _SCHEMA.build(cls, fields, path or cls.__name__)


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` (msgpack-native values and registered dataclasses)."""
    return pack(_to_plain(obj))


def loads(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Decode bytes from ``dumps``; raises only ``ProtocolError`` on bad input."""
    return _from_plain(unpack(data, max_bytes), "")
