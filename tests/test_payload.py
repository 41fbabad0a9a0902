"""Application payloads: registered dataclasses in place of pickle.

The payload registry is global, so every class here has a tag no other test
module uses (``test_payload.*``) or a class name unique to this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
import random
import uuid
from typing import Any

import msgpack
import pytest

import protocol
from protocol import ProtocolError

# --------------------------------------------------------------------------- the seed's classes


@protocol.dataclass
class PayloadSeedTask:
    id: int
    description: str
    difficulty: int


@protocol.dataclass
class PayloadSeedAssignment:
    task: PayloadSeedTask


@protocol.dataclass
class PayloadSeedResult:
    task_id: int
    worker: str
    success: bool


@protocol.dataclass(frozen=True)
class PayloadFrozenPoint:
    x: float
    y: float


@dataclasses.dataclass
class Batch:
    name: str
    tasks: list[PayloadSeedTask]
    by_worker: dict[str, PayloadSeedResult]
    best: PayloadSeedResult | None = None
    blob: bytes = b""
    extra: Any = None


protocol.register(Batch, "test_payload.Batch")


@dataclasses.dataclass
class NeverRegistered:
    value: int


@dataclasses.dataclass
class UnsupportedField:
    values: set[int]


def pk(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


TASK = PayloadSeedTask(id=1, description="Simple calculation", difficulty=2)

# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        2**64 - 1,
        -(2**63),
        1.5,
        "",
        "héllo",
        b"\x00\xff",
        [],
        [1, "a", None, [2.5]],
        {},
        {"a": [1, {"b": None}], "c": b"x"},
    ],
    ids=repr,
)
def test_plain_values_round_trip(value: Any) -> None:
    assert protocol.loads(protocol.dumps(value)) == value


def test_tuple_comes_back_as_list() -> None:
    assert protocol.loads(protocol.dumps((1, "a"))) == [1, "a"]


def test_seed_task_round_trips_as_its_class() -> None:
    back = protocol.loads(protocol.dumps(TASK))
    assert type(back) is PayloadSeedTask
    assert back == TASK


def test_nested_registered_dataclass_round_trips() -> None:
    msg = PayloadSeedAssignment(task=PayloadSeedTask(id=3, description="Complex", difficulty=8))
    back = protocol.loads(protocol.dumps(msg))
    assert back == msg
    assert type(back.task) is PayloadSeedTask


def test_lists_and_dicts_of_registered_dataclasses_round_trip() -> None:
    value = {
        "results": [
            PayloadSeedResult(task_id=1, worker="Worker-3", success=True),
            PayloadSeedResult(task_id=2, worker="Worker-6", success=False),
        ],
        "assignments": {"w-3": PayloadSeedAssignment(task=TASK)},
        "count": 2,
    }
    back = protocol.loads(protocol.dumps(value))
    assert back == value
    assert all(type(r) is PayloadSeedResult for r in back["results"])


def test_dataclass_with_container_fields_round_trips() -> None:
    batch = Batch(
        name="b",
        tasks=[TASK, PayloadSeedTask(id=2, description="", difficulty=5)],
        by_worker={"w": PayloadSeedResult(task_id=1, worker="w", success=True)},
        best=PayloadSeedResult(task_id=2, worker="v", success=False),
        blob=b"\x01",
        extra={"nested": [TASK]},
    )
    back = protocol.loads(protocol.dumps(batch))
    assert back == batch
    assert type(back.extra["nested"][0]) is PayloadSeedTask


def test_decorator_keyword_form_registers_and_keeps_options() -> None:
    point = PayloadFrozenPoint(x=1.0, y=2.5)
    back = protocol.loads(protocol.dumps(point))
    assert back == point
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.x = 3.0


def test_int_is_accepted_for_a_float_field() -> None:
    back = protocol.loads(pk({"__type__": "PayloadFrozenPoint", "x": 1, "y": 2}))
    assert back == PayloadFrozenPoint(x=1.0, y=2.0)


def test_registered_instance_travels_as_a_tagged_map() -> None:
    body = msgpack.unpackb(protocol.dumps(TASK), raw=False)
    assert body == {
        "__type__": "PayloadSeedTask",
        "id": 1,
        "description": "Simple calculation",
        "difficulty": 2,
    }


def test_explicit_tag_is_used_on_the_wire() -> None:
    batch = Batch(name="b", tasks=[], by_worker={})
    assert msgpack.unpackb(protocol.dumps(batch), raw=False)["__type__"] == "test_payload.Batch"


def test_foreign_peer_map_with_tag_loads_as_the_class() -> None:
    data = pk({"__type__": "PayloadSeedResult", "task_id": 9, "worker": "w", "success": True})
    assert protocol.loads(data) == PayloadSeedResult(task_id=9, worker="w", success=True)


# --------------------------------------------------------------------------- registration


def test_register_returns_the_class() -> None:
    @dataclasses.dataclass
    class Local:
        n: int

    assert protocol.register(Local, f"test_payload.{uuid.uuid4().hex}") is Local


def test_registering_the_same_class_twice_is_harmless() -> None:
    assert protocol.register(PayloadSeedTask) is PayloadSeedTask
    assert protocol.loads(protocol.dumps(TASK)) == TASK


def test_same_tag_for_two_classes_raises_value_error() -> None:
    @dataclasses.dataclass
    class First:
        n: int

    @dataclasses.dataclass
    class Second:
        n: int

    tag = f"test_payload.collision.{uuid.uuid4().hex}"  # unique even if the test reruns
    protocol.register(First, tag)
    with pytest.raises(ValueError, match=tag):
        protocol.register(Second, tag)
    assert type(protocol.loads(protocol.dumps(First(n=1)))) is First  # First keeps the tag


def test_default_tag_collision_with_seed_class_raises_value_error() -> None:
    with pytest.raises(ValueError, match="PayloadSeedTask"):

        @protocol.dataclass
        class PayloadSeedTask:  # same name as the module-level class
            id: int


@pytest.mark.parametrize("obj", [int, object(), NeverRegistered(1)], ids=["int", "obj", "inst"])
def test_register_refuses_what_is_not_a_dataclass_type(obj: Any) -> None:
    with pytest.raises(TypeError, match="not a dataclass"):
        protocol.register(obj)


def test_register_refuses_unsupported_field_types_at_once() -> None:
    with pytest.raises(TypeError, match="msgpack-native"):
        protocol.register(UnsupportedField, "test_payload.UnsupportedField")


# --------------------------------------------------------------------------- dumps errors


def test_unregistered_class_on_dumps_raises() -> None:
    with pytest.raises(ProtocolError, match="NeverRegistered") as err:
        protocol.dumps(NeverRegistered(value=1))
    assert err.value.code == "unregistered"


def test_unregistered_class_nested_in_containers_raises() -> None:
    with pytest.raises(ProtocolError):
        protocol.dumps({"a": [1, NeverRegistered(value=1)]})
    with pytest.raises(ProtocolError):
        protocol.dumps(Batch(name="b", tasks=[], by_worker={}, extra=NeverRegistered(value=2)))


@pytest.mark.parametrize(
    "value",
    [{"__type__": "PayloadSeedTask"}, {"a": [{"__type__": 1}]}, [{"x": 1, "__type__": None}]],
    ids=["top", "nested", "in-list"],
)
def test_reserved_key_in_plain_dict_on_dumps_raises(value: Any) -> None:
    with pytest.raises(ProtocolError, match="__type__"):
        protocol.dumps(value)


@pytest.mark.parametrize("value", [{1, 2}, object(), complex(1, 2)], ids=["set", "obj", "cplx"])
def test_non_msgpack_values_on_dumps_raise(value: Any) -> None:
    with pytest.raises(ProtocolError):
        protocol.dumps(value)


def test_loads_refuses_int_map_keys() -> None:
    with pytest.raises(ProtocolError):
        protocol.loads(pk({1: "one"}))


def test_dumps_refuses_what_loads_refuses_int_map_key() -> None:
    with pytest.raises(ProtocolError):
        protocol.dumps({1: "one"})


def test_class_itself_is_not_a_payload() -> None:
    with pytest.raises(ProtocolError):
        protocol.dumps(PayloadSeedTask)


# --------------------------------------------------------------------------- loads errors

CALLED: list[str] = []


def _side_effect() -> None:
    CALLED.append("executed")


class Exploit:
    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_side_effect, ())


@pytest.mark.parametrize("proto", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_bytes_are_refused_and_never_executed(proto: int) -> None:
    data = pickle.dumps([Exploit(), TASK], protocol=proto)
    with pytest.raises(ProtocolError):
        protocol.loads(data)
    assert CALLED == []


BAD_LOADS: list[tuple[str, bytes]] = [
    ("unknown-tag", pk({"__type__": "os.system", "command": "true"})),
    ("int-tag", pk({"__type__": 5, "id": 1})),
    ("list-tag", pk({"__type__": ["PayloadSeedTask"], "id": 1})),
    (
        "str-for-int",
        pk({"__type__": "PayloadSeedTask", "id": "1", "description": "", "difficulty": 1}),
    ),
    (
        "bool-for-int",
        pk({"__type__": "PayloadSeedTask", "id": True, "description": "", "difficulty": 1}),
    ),
    (
        "float-for-int",
        pk({"__type__": "PayloadSeedTask", "id": 1.0, "description": "", "difficulty": 1}),
    ),
    (
        "bytes-for-str",
        pk({"__type__": "PayloadSeedTask", "id": 1, "description": b"x", "difficulty": 1}),
    ),
    (
        "int-for-bool",
        pk({"__type__": "PayloadSeedResult", "task_id": 1, "worker": "w", "success": 1}),
    ),
    ("missing-field", pk({"__type__": "PayloadSeedTask", "id": 1, "description": ""})),
    (
        "unknown-field",
        pk({"__type__": "PayloadSeedTask", "id": 1, "description": "", "difficulty": 1, "x": 0}),
    ),
    ("nested-untagged", pk({"__type__": "PayloadSeedAssignment", "task": {"id": 1}})),
    (
        "nested-wrong-class",
        pk(
            {
                "__type__": "PayloadSeedAssignment",
                "task": {
                    "__type__": "PayloadSeedResult",
                    "task_id": 1,
                    "worker": "w",
                    "success": 1,
                },
            }
        ),
    ),
    ("nested-is-str", pk({"__type__": "PayloadSeedAssignment", "task": "t"})),
    ("unknown-tag-deep-inside", pk({"a": [{"b": {"__type__": "nope"}}]})),
    (
        "list-field-wrong-item",
        pk({"__type__": "test_payload.Batch", "name": "b", "tasks": [1], "by_worker": {}}),
    ),
    (
        "dict-field-is-list",
        pk({"__type__": "test_payload.Batch", "name": "b", "tasks": [], "by_worker": []}),
    ),
    ("garbage", b"\xc1\xc1"),
    ("truncated", protocol.dumps(TASK)[:-2]),
    ("trailing", protocol.dumps(TASK) + b"\x90"),
    ("ext-type", pk([msgpack.ExtType(3, b"x")])),
]


@pytest.mark.parametrize("data", [d for _, d in BAD_LOADS], ids=[n for n, _ in BAD_LOADS])
def test_bad_payload_on_loads_raises_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError) as err:
        protocol.loads(data)
    assert type(err.value) is ProtocolError


def test_unknown_tag_on_loads_has_code_unregistered() -> None:
    with pytest.raises(ProtocolError, match=r"os\.system") as err:
        protocol.loads(pk({"__type__": "os.system", "command": "true"}))
    assert err.value.code == "unregistered"


def test_field_mismatch_names_the_field() -> None:
    data = pk({"__type__": "PayloadSeedTask", "id": "1", "description": "", "difficulty": 1})
    with pytest.raises(ProtocolError, match=r"\bid\b"):
        protocol.loads(data)


def test_loads_enforces_max_bytes() -> None:
    data = protocol.dumps("x" * 100)
    assert protocol.loads(data, max_bytes=len(data)) == "x" * 100
    with pytest.raises(ProtocolError) as err:
        protocol.loads(data, max_bytes=len(data) - 1)
    assert err.value.code == "too_large"


def test_reserved_key_with_nil_tag_on_loads_raises() -> None:
    with pytest.raises(ProtocolError):
        protocol.loads(pk({"__type__": None, "x": 1}))


def test_deeply_nested_payload_raises_only_protocol_error() -> None:
    data = b"\x91" * 1000 + b"\xc0"  # [[[...[nil]...]]], within msgpack's own depth limit
    with contextlib.suppress(ProtocolError):  # refusing it is fine, crashing is not
        protocol.loads(data)


def test_mutated_payloads_raise_only_protocol_error() -> None:
    rng = random.Random(99)
    samples = [
        protocol.dumps(PayloadSeedAssignment(task=TASK)),
        protocol.dumps([PayloadSeedResult(task_id=1, worker="w", success=True), {"k": 1.5}]),
        protocol.dumps(Batch(name="b", tasks=[TASK], by_worker={}, blob=b"\x00")),
    ]
    loaded = 0
    for i in range(2000):
        buf = bytearray(samples[i % len(samples)])
        pos = rng.randrange(len(buf))
        if rng.random() < 0.5:
            buf[pos] = rng.randrange(256)
        else:
            del buf[pos : pos + rng.randint(1, 3)]
        try:
            protocol.loads(bytes(buf))
            loaded += 1
        except ProtocolError:
            pass
    assert 0 < loaded < 2000
