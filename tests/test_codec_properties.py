"""Property tests (hypothesis) of the wire codec and of application payloads.

Strategies are built from the dataclass annotations themselves, so a new
message type or field is covered without touching this file; the only
hand-written rules are the ``__post_init__`` checks (``RULES``).  Settings
are derandomized with a fixed number of examples: the file gives the same
verdict on every run and in CI, in a few seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import types
import typing
from collections.abc import Callable
from dataclasses import field
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol
from protocol import (
    MAX_BACKOFF,
    MAX_MESSAGE_BYTES,
    MAX_RETRIES,
    MESSAGE_TYPES,
    RESULT_STATUSES,
    Broadcast,
    Finished,
    Message,
    ProtocolError,
    TaskResult,
    TaskSpec,
    decode,
    encode,
)
from protocol.codec import plain
from tests.helpers.junk import KNOWN_BUGS, MANAGER_TO_PEER, JunkFactory, mutate

Strategy = st.SearchStrategy[Any]

PROPS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(PROPS, max_examples=25)

INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1

# --------------------------------------------------------------------------- values

ints = st.integers(INT64_MIN, UINT64_MAX)  # everything msgpack carries
floats = st.floats(allow_nan=False)  # NaN != NaN: round trips compare encodings instead
texts = st.text(max_size=12)
blobs = st.binary(max_size=24)
scalars = st.none() | st.booleans() | ints | floats | texts | blobs
#: Any msgpack-native value: what an ``Any`` field may hold.
natives: Strategy = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
#: Anything msgpack can pack, NaN and non-str map keys included (for refusals).
wild: Strategy = st.recursive(
    scalars | st.just(float("nan")),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(texts | st.integers(-3, 3), inner, max_size=4)
    ),
    max_leaves=12,
)


def _task_spec(draw: Callable[[Strategy], Any], kw: dict[str, Any]) -> dict[str, Any]:
    kw["id"] = draw(st.text(min_size=1, max_size=12))
    kw["difficulty"] = draw(st.integers(1, 10))
    kw["kind"] = draw(st.text(min_size=1, max_size=12))
    kw["timeout"] = draw(st.none() | st.floats(0, exclude_min=True, allow_infinity=False))
    kw["max_attempts"] = draw(st.none() | st.integers(1, UINT64_MAX))
    kw["retries"] = draw(st.integers(0, MAX_RETRIES))
    kw["retry_backoff"] = draw(st.floats(0, MAX_BACKOFF))
    return kw


def _task_result(draw: Callable[[Strategy], Any], kw: dict[str, Any]) -> dict[str, Any]:
    kw["status"] = draw(st.sampled_from(sorted(RESULT_STATUSES)))
    kw["success"] = kw["status"] == "succeeded"
    kw["attempt"] = draw(st.integers(0, UINT64_MAX))
    return kw


def _finished(draw: Callable[[Strategy], Any], kw: dict[str, Any]) -> dict[str, Any]:
    kw["ids"] = draw(st.lists(texts, max_size=3))
    statuses = st.sampled_from(sorted(RESULT_STATUSES))
    kw["statuses"] = [draw(statuses) for _ in kw["ids"]]
    return kw


#: The ``__post_init__`` rules of the wire records, as redraws of the fields they constrain.
RULES: dict[type, Callable[[Callable[[Strategy], Any], dict[str, Any]], dict[str, Any]]] = {
    TaskSpec: _task_spec,
    TaskResult: _task_result,
    Finished: _finished,
}


def for_type(tp: Any, record: Callable[[type], Strategy]) -> Strategy:
    """Valid values of annotation ``tp``; nested dataclasses come from ``record``."""
    if tp is Any:
        return natives
    simple = {str: texts, int: ints, float: floats, bool: st.booleans(), bytes: blobs}
    if tp in simple:
        return simple[tp]
    if tp is type(None) or tp is None:
        return st.none()
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return st.one_of([for_type(a, record) for a in args])
    if origin is list:
        return st.lists(for_type(args[0], record), max_size=3)
    if origin is dict:
        return st.dictionaries(texts, for_type(args[1], record), max_size=3)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return record(tp)
    raise TypeError(f"no strategy for annotation {tp!r}")


def field_strategies(
    cls: type, record: Callable[[type], Strategy]
) -> tuple[dict[str, Strategy], dict[str, Strategy]]:
    """Strategies for the required and the optional (defaulted) init fields of ``cls``."""
    hints = typing.get_type_hints(cls)
    required: dict[str, Strategy] = {}
    optional: dict[str, Strategy] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        has_default = f.default is not dataclasses.MISSING
        has_default |= f.default_factory is not dataclasses.MISSING
        (optional if has_default else required)[f.name] = for_type(hints[f.name], record)
    return required, optional


def records(cls: type) -> Strategy:
    """Valid instances of wire record or message ``cls`` (defaults sometimes left out)."""

    @st.composite
    def build(draw: Callable[[Strategy], Any]) -> Any:
        required, optional = field_strategies(cls, records)
        kw = draw(st.fixed_dictionaries(required, optional=optional))
        rule = RULES.get(cls)
        if rule is not None:
            kw = rule(draw, kw)
        return cls(**kw)

    return build()


# ------------------------------------------------------------------ decode never fails badly


def decode_or_refuse(data: bytes) -> Message | None:
    """``decode`` must return a message or raise ``ProtocolError``, nothing else.

    What it accepts must travel back: it encodes, and decodes to the same encoding.
    """
    try:
        msg = decode(data)
    except ProtocolError:
        return None
    assert isinstance(msg, MESSAGE_TYPES)
    again = encode(msg, max_bytes=1 << 62)
    assert encode(decode(again), max_bytes=1 << 62) == again
    return msg


@PROPS
@given(st.binary(max_size=512))
def test_any_bytes_decode_to_a_message_or_protocol_error(data: bytes) -> None:
    decode_or_refuse(data)


@PROPS
@given(wild)
def test_any_msgpack_value_decodes_to_a_message_or_protocol_error(value: Any) -> None:
    decode_or_refuse(msgpack.packb(value, use_bin_type=True))


def shaped(tp: Any) -> Strategy:
    """Mostly-valid plain values of ``tp``: wrong types, NaN, edge ints and missing or
    extra fields at every depth, so that decoding reaches the schema and ``__post_init__``."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return st.one_of(records(tp).map(plain), message_maps(tp))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    valid: Strategy
    if origin is list:
        valid = st.lists(shaped(args[0]), max_size=3)
    elif origin is dict:
        valid = st.dictionaries(texts, shaped(args[1]), max_size=3)
    elif origin in (types.UnionType, typing.Union):
        valid = st.one_of([shaped(a) for a in args])
    else:
        valid = for_type(tp, lambda c: records(c).map(plain))
    edges = st.sampled_from([0, -1, 11, INT64_MIN, UINT64_MAX, float("nan"), float("inf"), ""])
    # one_of() drops repeated branches, so weight by a drawn number: 1 in 10 is off
    return st.integers(0, 19).flatmap(lambda n: valid if n > 1 else (edges, wild)[n])


def message_maps(cls: type) -> Strategy:
    """Maps of ``cls``'s fields, each value from ``shaped``; sometimes a required field
    is missing or an unknown one is added."""
    required, optional = field_strategies(cls, lambda c: st.nothing())
    hints = typing.get_type_hints(cls)
    fields = st.fixed_dictionaries(
        {n: shaped(hints[n]) for n in required}, optional={n: shaped(hints[n]) for n in optional}
    )

    @st.composite
    def build(draw: Callable[[Strategy], Any]) -> dict[str, Any]:
        body: dict[str, Any] = draw(fields)
        change = draw(st.integers(0, 11))
        if change == 0 and body:
            del body[draw(st.sampled_from(sorted(body)))]
        elif change == 1:
            body[draw(st.sampled_from(["extra", "__type__", "type"]))] = draw(wild)
        return body

    return build()


type_tags = st.one_of(
    st.sampled_from([cls.TYPE for cls in MESSAGE_TYPES]),
    st.sampled_from(["", "nope", "REGISTER", 7, None, b"submit"]),
)


@st.composite
def messages_shaped(draw: Callable[[Strategy], Any]) -> dict[str, Any]:
    cls = draw(st.sampled_from(MESSAGE_TYPES))
    body: dict[str, Any] = draw(message_maps(cls))
    tag = cls.TYPE if draw(st.integers(0, 9)) else draw(type_tags)
    return {**body, "type": tag}


#: How the codec's refusals before any schema check begin.
UNPACKER_ERRORS = ("not valid msgpack", "message must be", "message has no", "unknown message")


def test_message_shaped_maps_decode_to_a_message_or_protocol_error() -> None:
    """Also checks that the generator is worth its name: many inputs decode, and many
    are refused past the unpacker (by the schema or a ``__post_init__`` rule)."""
    outcomes = {"decoded": 0, "schema": 0, "unpacker": 0}

    @settings(PROPS, max_examples=200)
    @given(messages_shaped())
    def check(body: dict[str, Any]) -> None:
        data = msgpack.packb(body, use_bin_type=True)
        if decode_or_refuse(data) is not None:
            outcomes["decoded"] += 1
            return
        with pytest.raises(ProtocolError) as err:
            decode(data)
        outcomes["unpacker" if str(err.value).startswith(UNPACKER_ERRORS) else "schema"] += 1

    check()
    # About a quarter decode (TaskSpec's constrained fields refuse many maps that carry one).
    assert outcomes["decoded"] >= 40, outcomes
    assert outcomes["schema"] >= 50, outcomes


@PROPS
@given(st.sampled_from(MESSAGE_TYPES).flatmap(records), st.randoms(use_true_random=False))
def test_mutated_messages_decode_to_a_message_or_protocol_error(
    msg: Message, rng: random.Random
) -> None:
    decode_or_refuse(mutate(rng, encode(msg)))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.TYPE)
def test_every_message_type_round_trips_and_encodes_within_its_limit(cls: type[Message]) -> None:
    """``decode(encode(m)) == m``; ``encode`` refuses exactly the messages over ``max_bytes``."""

    @FEW
    @given(records(cls))
    def check(msg: Message) -> None:
        data = encode(msg)
        assert decode(data) == msg
        assert encode(msg, max_bytes=len(data)) == data
        with pytest.raises(ProtocolError) as err:
            encode(msg, max_bytes=len(data) - 1)
        assert err.value.code == "too_large"

    check()


@FEW
@given(st.integers(0, 4096), records(Broadcast))
def test_encode_of_a_message_over_the_default_limit_is_too_large(
    extra: int, msg: Broadcast
) -> None:
    base = len(encode(dataclasses.replace(msg, data=b"")))
    fits = MAX_MESSAGE_BYTES - (base - 2) - 5  # data=b"" took a 2-byte bin8 header; now bin32
    assert len(encode(dataclasses.replace(msg, data=b"x" * fits))) == MAX_MESSAGE_BYTES
    with pytest.raises(ProtocolError) as err:
        encode(dataclasses.replace(msg, data=b"x" * (fits + 1 + extra)))
    assert err.value.code == "too_large"


# --------------------------------------------------------------------------- payloads


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str = ""


@dataclasses.dataclass
class Shape:
    name: str
    corners: list[Point]
    weights: dict[str, int]
    anchor: Point | None = None
    blob: bytes = b""
    extra: Any = None
    closed: bool = False
    nothing: None = None
    layers: list[list[int]] = field(default_factory=list)
    named: dict[str, Point] = field(default_factory=dict)


protocol.register(Point, "properties.Point")
protocol.register(Shape, "properties.Shape")

payload_keys = texts.filter(lambda k: k != "__type__")  # reserved for registered classes
payload_natives: Strategy = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(payload_keys, inner, max_size=4),
    max_leaves=12,
)


def payload_records(cls: type) -> Strategy:
    @st.composite
    def build(draw: Callable[[Strategy], Any]) -> Any:
        required, optional = field_strategies(cls, payload_records)
        if "extra" in optional:
            optional["extra"] = payload_natives
        return cls(**draw(st.fixed_dictionaries(required, optional=optional)))

    return build()


payloads: Strategy = st.recursive(
    payload_natives | payload_records(Point) | payload_records(Shape),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(payload_keys, inner, max_size=3),
    max_leaves=6,
)


@settings(PROPS, max_examples=100)
@given(payloads)
def test_payloads_of_registered_dataclasses_round_trip(value: Any) -> None:
    assert protocol.loads(protocol.dumps(value)) == value


def loads_or_refuse(data: bytes) -> None:
    """``loads`` must return a value or raise ``ProtocolError``, nothing else."""
    with contextlib.suppress(ProtocolError):
        protocol.loads(data)


@PROPS
@given(st.binary(max_size=512))
def test_any_bytes_load_to_a_value_or_protocol_error(data: bytes) -> None:
    loads_or_refuse(data)


@settings(PROPS, max_examples=100)
@given(payloads, st.randoms(use_true_random=False))
def test_mutated_payloads_load_to_a_value_or_protocol_error(value: Any, rng: random.Random) -> None:
    loads_or_refuse(mutate(rng, protocol.dumps(value)))


@PROPS
@given(wild, st.sampled_from(["properties.Point", "properties.Shape", "nope", 3]))
def test_tagged_maps_of_any_shape_load_to_a_value_or_protocol_error(value: Any, tag: Any) -> None:
    body = value if isinstance(value, dict) else {"x": value}
    loads_or_refuse(msgpack.packb({**body, "__type__": tag}, use_bin_type=True))


# ------------------------------------------------------------------ the live fuzzer's labels


def test_junk_labels_agree_with_the_codec() -> None:
    """What ``tests/helpers/junk.py`` says of each single frame is what the codec does."""
    factory = JunkFactory(
        random.Random(5),
        worker_ids=["w-1"],
        worker_names=["W"],
        task_ids=["1", "2", "3"],
        anon_ids=["anon-0"],
    )
    seen = set()
    for junk in factory.frames(3000):
        seen.add(junk.kind)
        if len(junk.frames) != 1 or junk.expect in ("any", "dropped"):
            continue
        msg = decode_or_refuse(junk.frames[0])
        if junk.expect == "bad":
            assert msg is None or msg.TYPE in MANAGER_TO_PEER, junk
        else:
            assert msg is not None, junk
    assert len(seen) == len(factory.makers) - len(KNOWN_BUGS)  # every kind but known bugs
