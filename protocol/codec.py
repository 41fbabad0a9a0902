"""msgpack encoding of wire messages: the only module that imports msgpack.

``encode`` turns a message dataclass into bytes; ``decode`` turns untrusted
bytes into a message or raises ``ProtocolError`` — never anything else.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import msgpack

from protocol.compiled import ENCODERS as _ENCODERS
from protocol.compiled import FAIL, builder, encoder
from protocol.constants import MAX_MESSAGE_BYTES
from protocol.errors import ProtocolError
from protocol.messages import MESSAGE_TYPES, Message
from protocol.schema import Schema

T = TypeVar("T")

_BY_TYPE: dict[str, type[Message]] = {cls.TYPE: cls for cls in MESSAGE_TYPES}
_SCHEMA = Schema(tagged=False)
#: One msgpack ``Packer`` per thread, reused: ``packb`` builds a new one per call,
#: which costs as much as packing a small record.  A failed ``pack`` resets it.
_PACKERS = threading.local()


def plain(value: Any) -> Any:
    """Turn nested dataclasses into maps of their fields, recursively."""
    known = _ENCODERS.get(type(value))
    if known is not None:
        return known(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ProtocolError(f"map key {k!r} is not a string", "encode")
            out[str(k)] = plain(v)  # str(): a StrEnum key travels as its value
        return out
    return value


def pack(value: Any) -> bytes:
    """msgpack-encode plain values; anything that is not msgpack-native is an error."""
    try:
        packer = _PACKERS.packer
    except AttributeError:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True, datetime=False)
    try:
        return packer.pack(value)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"cannot encode: {exc}", "encode") from None


def unpack(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """msgpack-decode untrusted bytes with size limits; no ext types, str map keys only."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {max_bytes}", "too_large")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
            max_ext_len=0,  # every ext type is refused, msgpack's Timestamp (-1) included
        )
    except ProtocolError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"not valid msgpack: {type(exc).__name__}: {exc}") from None


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack ext type {code} is not allowed")


def encode(msg: Message, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """Encode one message as ``{"type": TYPE, **fields}``; never more than ``max_bytes``.

    A message the receiver would refuse (or ZeroMQ would drop) is a clear
    ``ProtocolError`` (code ``too_large``) here instead.
    """
    body = _ENCODERS[type(msg)](msg)
    body["type"] = msg.TYPE
    data = pack(body)
    if len(data) > max_bytes:
        raise ProtocolError(
            f"{msg.TYPE} message of {len(data)} bytes is over the {max_bytes}-byte limit",
            "too_large",
        )
    return data


def encode_batches(
    items: Sequence[T], build: Callable[[list[T]], Message], max_bytes: int = MAX_MESSAGE_BYTES
) -> Iterator[bytes]:
    """Encode ``build(batch)`` for consecutive batches of ``items``, each within ``max_bytes``.

    Batches are as large as fit; an item too large to travel even alone raises
    ``ProtocolError`` (code ``too_large``).
    """
    for data, _ in encode_chunks(items, build, max_bytes):
        yield data


def encode_chunks(
    items: Sequence[T], build: Callable[[list[T]], Message], max_bytes: int = MAX_MESSAGE_BYTES
) -> Iterator[tuple[bytes, int]]:
    """``encode_batches`` that also says how many items each message carries."""
    return _chunks(items, lambda batch: encode(build(batch), max_bytes=1 << 62), max_bytes)


def pack_chunks(
    items: Sequence[Any],
    wrap: Callable[[list[Any]], dict[str, Any]],
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> Iterator[tuple[bytes, int]]:
    """``encode_chunks`` for hot paths that build plain message maps themselves.

    ``items`` are plain values (maps of records as the encoders make them);
    ``wrap(batch)`` returns the whole message map, ``type`` included.
    """
    return _chunks(items, lambda batch: pack(wrap(batch)), max_bytes)


def _chunks(
    items: Sequence[T], make: Callable[[list[T]], bytes], max_bytes: int
) -> Iterator[tuple[bytes, int]]:
    """Consecutive batches of ``items`` made into messages of at most ``max_bytes`` each.

    Batches are as large as fit; an item too large to travel even alone raises
    ``ProtocolError`` (code ``too_large``).
    """
    start = 0
    while start < len(items):
        count = len(items) - start
        while True:
            data = make(list(items[start : start + count]))
            if len(data) <= max_bytes:
                break
            if count == 1:
                raise ProtocolError(
                    f"one item needs {len(data)} bytes, over the {max_bytes}-byte limit",
                    "too_large",
                )
            count = max(1, min(count - 1, count * max_bytes // len(data)))
        yield data, count
        start += count


def encoded_size(value: Any) -> int:
    """Bytes ``value`` (a record or plain value) takes on the wire."""
    return len(pack(plain(value)))


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode and validate one message; raises only ``ProtocolError``."""
    body = unpack(data, max_bytes)
    if type(body) is not dict:
        raise ProtocolError(f"message must be a map, got {type(body).__name__}")
    tag = body.pop("type", None)
    if type(tag) is not str:
        raise ProtocolError("message has no string 'type'")
    cls = _BY_TYPE.get(tag)
    if cls is None:
        raise ProtocolError(f"unknown message type {tag[:40]!r}", "unknown_type")
    msg = _BUILDERS[cls](body)
    if msg is FAIL:  # the slow path says precisely what is wrong
        return _SCHEMA.build(cls, body, tag)
    return msg  # type: ignore[no-any-return]


def build(cls: type[Any], mapping: Any) -> Any:
    """Validate a plain mapping (for example a JSON task) as record ``cls``."""
    record = builder(cls)(mapping)
    return _SCHEMA.build(cls, mapping) if record is FAIL else record


_BUILDERS = {cls: builder(cls) for cls in MESSAGE_TYPES}
for _cls in MESSAGE_TYPES:
    encoder(_cls)  # compiles the nested records too
