"""The wire codec: every message round-trips, and bad input raises only ProtocolError."""

from __future__ import annotations

import dataclasses
import random
from typing import Any, cast

import msgpack
import pytest

import protocol
from protocol import (
    MAX_NAME,
    MAX_TASK_ID,
    ActionReply,
    AgentRef,
    Assign,
    Broadcast,
    Bye,
    CancelRequest,
    Direct,
    Drain,
    Error,
    ErrorInfo,
    Finished,
    Heartbeat,
    HistoryReply,
    HistoryRequest,
    Job,
    Joined,
    Left,
    Message,
    Probe,
    ProtocolError,
    PurgeReply,
    PurgeRequest,
    Ready,
    Refusal,
    Register,
    ResultAck,
    ResultKey,
    Results,
    RetryRequest,
    Roster,
    StatusReply,
    StatusRequest,
    Submit,
    SubmitReply,
    TaskResult,
    TaskSpec,
    TasksReply,
    TasksRequest,
    TaskState,
    Watch,
    WatchReply,
    Welcome,
    Withdraw,
    WorkerInfo,
)

# --------------------------------------------------------------------------- samples

SPEC = TaskSpec(
    id="task-7",
    description="render frame 7",
    difficulty=8,
    kind="render",
    payload={"frame": 7, "scale": 0.5, "tags": ["a", "b"], "blob": b"\x00\xff", "none": None},
    timeout=30.0,
    max_attempts=2,
    retries=3,
    retry_backoff=0.25,
)
RESULT = TaskResult(
    task_id="task-7",
    attempt=2,
    worker="Worker-9",
    worker_id="w-9",
    success=False,
    status="failed",
    output=[1, "two", {"three": 3.0}],
    error=ErrorInfo(type="ValueError", message="bad frame", traceback="Traceback ...\n"),
    started=1700000000.25,
    finished=1700000003.5,
    skill=9,
)
AGENT = AgentRef(id="w-9", name="Worker-9", role="worker")
WORKER = WorkerInfo(
    id="w-9",
    name="Worker-9",
    role="worker",
    skill=9,
    capacity=2,
    kinds=["render", "simulate"],
    running=1,
    completed=41,
    state="connected",
    silent_for=0.25,
)
STATE = TaskState(
    id="task-7",
    state="done",
    attempt=2,
    description="render frame 7",
    difficulty=8,
    worker="w-9",
    result=RESULT,
)

SAMPLES: list[Message] = [
    Register(
        version=protocol.PROTOCOL_VERSION,
        agent_id="w-9",
        name="Worker-9",
        role="worker",
        workspace_id=protocol.DEFAULT_WORKSPACE_ID,
        skill=9,
        capacity=2,
        kinds=["render", "simulate"],
        epoch="e-1",
        time=1700000000123,
        holding=[ResultKey(task_id="task-7", attempt=2), ResultKey(task_id="task-8", attempt=1)],
    ),
    Welcome(
        version=protocol.PROTOCOL_VERSION,
        manager_id="m-1",
        manager_name="Admin",
        epoch="e-1",
        pub_endpoint="tcp://127.0.0.1:8889",
        heartbeat_interval=0.5,
        liveness=3,
    ),
    Probe(agent_id="w-9", epoch="e-1"),
    Ready(epoch="e-1"),
    Heartbeat(epoch="e-1", time=1700000000123, running=2),
    Bye(reason="shutting down"),
    Drain(grace=5.0),
    Joined(agent=AGENT),
    Left(agent=AGENT, reason="lost: silent for 3.0s"),
    Roster(agents=[AGENT, AgentRef(id="w-3", name="Worker-3", role="worker")]),
    Direct(sender="w-3", target="w-9", seq=12, time=1700000000123, data=b"\x80\x00hello"),
    Broadcast(sender="w-3", seq=13, time=1700000000124, data=b"to all"),
    Assign(epoch="e-1", jobs=[Job(task=SPEC, attempt=2), Job(task=TaskSpec(id="t-2"))]),
    Results(results=[RESULT]),
    ResultAck(keys=[ResultKey(task_id="task-7", attempt=2)]),
    Submit(req=4, tasks=[SPEC, TaskSpec(id="t-2", difficulty=2)]),
    SubmitReply(req=4, accepted=["t-2"], known=[STATE]),
    StatusRequest(req=5),
    StatusReply(
        req=5,
        manager_id="m-1",
        epoch="e-1",
        policy="best-fit",
        workers=[WORKER],
        counts={"queued": 1, "running": 1, "done": 3},
        uptime=12.5,
    ),
    TasksRequest(req=6, ids=["task-7", "t-2"]),
    TasksReply(req=6, tasks=[STATE, TaskState(id="t-2", state="queued", attempt=0)], next=17),
    Watch(req=8, ids=["task-7", "t-2"]),
    WatchReply(req=8, epoch="e-1", done=[STATE], unknown=["t-9"], watching=1),
    Finished(epoch="e-1", tasks=[STATE]),
    Error(code="unknown_type", message="unknown message type 'x'", req=6),
    CancelRequest(req=9, ids=["task-7", "t-2"]),
    RetryRequest(req=10, ids=["task-7"]),
    ActionReply(
        req=9,
        acted=[TaskState(id="task-7", state="done", attempt=2)],
        refused=[Refusal(id="t-2", code="unknown", message="no task 't-2'")],
    ),
    PurgeRequest(req=11, state="failed", older_than=86400.0),
    PurgeReply(req=11, purged=3),
    HistoryRequest(req=12, id="task-7"),
    HistoryReply(req=12, task=TaskState(id="task-7", state="done", attempt=2), attempts=[RESULT]),
    Withdraw(epoch="e-1", keys=[ResultKey(task_id="task-7", attempt=2)]),
]


def pk(obj: Any) -> bytes:
    """Encode raw msgpack the way a foreign peer would."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def hb(**fields: Any) -> bytes:
    """A heartbeat map with some fields replaced or added."""
    body: dict[Any, Any] = {"type": "heartbeat", "epoch": "e-1", "time": 5, "running": 0}
    body.update(fields)
    return pk(body)


def submit_task(**fields: Any) -> bytes:
    """A submit message carrying one task map with the given fields."""
    task: dict[str, Any] = {"id": "t-1", "description": "", "difficulty": 3}
    task.update(fields)
    return pk({"type": "submit", "req": 1, "tasks": [task]})


def status_reply(**fields: Any) -> bytes:
    body: dict[Any, Any] = {
        "type": "status_reply",
        "req": 1,
        "manager_id": "m",
        "epoch": "e",
        "policy": "best-fit",
        "workers": [],
        "counts": {},
        "uptime": 1.0,
    }
    body.update(fields)
    return pk(body)


# --------------------------------------------------------------------------- round trips


def test_samples_cover_every_message_type() -> None:
    assert {type(m) for m in SAMPLES} == set(protocol.MESSAGE_TYPES)
    assert len(SAMPLES) == len(protocol.MESSAGE_TYPES)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.TYPE)
def test_round_trip_every_message_type(msg: Message) -> None:
    data = protocol.encode(msg)
    assert isinstance(data, bytes)
    decoded = protocol.decode(data)
    assert type(decoded) is type(msg)
    assert decoded == msg


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.TYPE)
def test_wire_form_is_one_flat_map_with_type_tag(msg: Message) -> None:
    body = msgpack.unpackb(protocol.encode(msg), raw=False)
    assert isinstance(body, dict)
    assert body["type"] == msg.TYPE
    assert set(body) == {"type", *(f.name for f in dataclasses.fields(cast(Any, msg)))}


def test_nested_records_travel_as_plain_maps() -> None:
    body = msgpack.unpackb(protocol.encode(Results(results=[RESULT])), raw=False)
    assert body["results"][0]["error"] == {
        "type": "ValueError",
        "message": "bad frame",
        "traceback": "Traceback ...\n",
    }
    assert body["results"][0]["task_id"] == "task-7"


def test_bytes_travel_as_msgpack_bin() -> None:
    data = protocol.encode(Direct(sender="a", target="b", seq=1, time=2, data=b"\xff"))
    body = msgpack.unpackb(data, raw=True)
    assert body[b"data"] == b"\xff"
    assert body[b"sender"] == b"a"  # str travels as msgpack str, bin as bin


def test_decode_fills_defaults_a_foreign_peer_omits() -> None:
    msg = protocol.decode(
        pk({"type": "register", "version": 1, "agent_id": "w", "name": "W", "workspace_id": "x"})
    )
    assert msg == Register(version=1, agent_id="w", name="W", workspace_id="x")
    assert isinstance(msg, Register)
    assert msg.role == "worker"
    assert msg.capacity == 1
    assert msg.holding == []


def test_int_is_accepted_where_float_is_expected() -> None:
    msg = protocol.decode(
        pk(
            {
                "type": "welcome",
                "version": 1,
                "manager_id": "m",
                "manager_name": "M",
                "epoch": "e",
                "pub_endpoint": "tcp://x:1",
                "heartbeat_interval": 2,
                "liveness": 3,
            }
        )
    )
    assert isinstance(msg, Welcome)
    assert msg.heartbeat_interval == 2.0
    assert type(msg.heartbeat_interval) is float


@pytest.mark.parametrize(
    "data",
    [bytearray(protocol.encode(Ready(epoch="e"))), memoryview(protocol.encode(Ready(epoch="e")))],
    ids=["bytearray", "memoryview"],
)
def test_decode_accepts_bytes_like_frames(data: bytearray | memoryview) -> None:
    assert protocol.decode(data) == Ready(epoch="e")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 2**64 - 1, -(2**63)], ids=["zero", "u64max", "i64min"])
def test_full_msgpack_int_range_is_accepted(value: int) -> None:
    assert protocol.decode(hb(time=value)) == Heartbeat(epoch="e-1", time=value, running=0)


def test_encode_of_int_beyond_msgpack_range_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError) as err:
        protocol.encode(Heartbeat(epoch="e", time=2**64))
    assert err.value.code == "encode"


def test_encode_refuses_what_decode_refuses_int_map_key_in_output() -> None:
    result = dataclasses.replace(RESULT, output={1: "one"})  # e.g. a handler's word counts
    with pytest.raises(ProtocolError):
        protocol.encode(Results(results=[result]))


def test_payload_with_non_msgpack_value_cannot_be_encoded() -> None:
    with pytest.raises(ProtocolError) as err:
        protocol.encode(Submit(req=1, tasks=[TaskSpec(id="t", payload={1, 2})]))
    assert err.value.code == "encode"


# --------------------------------------------------------------------------- malformed input

GOOD = protocol.encode(SAMPLES[0])

MALFORMED: list[tuple[str, bytes]] = [
    # not msgpack at all
    ("empty", b""),
    ("truncated", GOOD[:-1]),
    ("truncated-half", GOOD[: len(GOOD) // 2]),
    ("truncated-header", b"\xdb\x00\x00"),
    ("garbage-reserved-byte", b"\xc1"),
    ("garbage-text", b"GET / HTTP/1.1\r\n\r\n"),
    ("trailing-bytes", protocol.encode(Ready(epoch="e")) + b"\x00"),
    ("two-messages", protocol.encode(Ready(epoch="e")) * 2),
    ("invalid-utf8-str", b"\x81\xa4type\xa2\xff\xfe"),
    ("array32-claims-huge-length", b"\xdd\xff\xff\xff\xff"),
    # wrong shape
    ("top-level-array", pk(["heartbeat", "e", 5])),
    ("top-level-str", pk("ready")),
    ("top-level-nil", pk(None)),
    ("top-level-int", pk(7)),
    ("missing-type", pk({"epoch": "e"})),
    ("type-int", pk({"type": 3, "epoch": "e"})),
    ("type-nil", pk({"type": None, "epoch": "e"})),
    ("type-bytes", pk({"type": b"ready", "epoch": "e"})),
    ("type-list", pk({"type": ["ready"], "epoch": "e"})),
    ("unknown-type", pk({"type": "launch_missiles"})),
    ("type-wrong-case", pk({"type": "Ready", "epoch": "e"})),
    # fields
    ("missing-required-field", pk({"type": "ready"})),
    ("missing-second-field", pk({"type": "heartbeat", "epoch": "e"})),
    ("unknown-extra-field", hb(colour="red")),
    ("str-for-int", hb(time="5")),
    ("bool-for-int", hb(time=True)),
    ("float-for-int", hb(time=5.0)),
    ("nil-for-int", hb(time=None)),
    ("int-for-str", hb(epoch=1)),
    ("bytes-for-str", hb(epoch=b"e-1")),
    ("nil-for-str", hb(epoch=None)),
    ("str-for-bytes", pk({"type": "broadcast", "sender": "a", "seq": 1, "time": 1, "data": "x"})),
    ("bool-for-float", status_reply(uptime=True)),
    ("str-for-float", status_reply(uptime="1.0")),
    ("nil-for-float", pk({"type": "drain", "grace": None})),
    ("list-for-map", status_reply(counts=[])),
    ("map-for-list", pk({"type": "submit", "req": 1, "tasks": {"id": "t"}})),
    ("map-value-wrong-type", status_reply(counts={"queued": "1"})),
    ("map-key-bytes", status_reply(counts={b"queued": 1})),
    ("list-item-wrong-type", pk({"type": "tasks", "req": 1, "ids": ["a", 2]})),
    ("nested-record-is-str", pk({"type": "joined", "agent": "w-9"})),
    ("nested-record-is-list", pk({"type": "joined", "agent": ["w", "W", "worker"]})),
    ("nested-record-missing-field", pk({"type": "joined", "agent": {"id": "w", "name": "W"}})),
    (
        "nested-record-extra-field",
        pk({"type": "joined", "agent": {"id": "w", "name": "W", "role": "r", "x": 1}}),
    ),
    ("nested-record-wrong-field-type", submit_task(difficulty="3")),
    ("doubly-nested-wrong", pk({"type": "assign", "epoch": "e", "jobs": [{"task": {"id": 1}}]})),
    ("optional-record-wrong", pk({"type": "results", "results": [{"error": "boom"}]})),
    # msgpack features that are not allowed
    ("ext-type-top-level", pk(msgpack.ExtType(5, b"x"))),
    ("ext-type-in-any-field", submit_task(payload=msgpack.ExtType(1, b"\x00"))),
    ("ext-type-as-type", pk({"type": msgpack.ExtType(0, b"ready"), "epoch": "e"})),
    ("int-map-key", pk({"type": "ready", "epoch": "e", 1: 2})),
    ("int-map-key-in-any-field", submit_task(payload={1: "one"})),
    ("nil-map-key", pk({"type": "ready", "epoch": "e", None: 2})),
    # TaskSpec's own rules
    ("difficulty-0", submit_task(difficulty=0)),
    ("difficulty-11", submit_task(difficulty=11)),
    ("difficulty-negative", submit_task(difficulty=-3)),
    ("empty-id", submit_task(id="")),
    ("empty-kind", submit_task(kind="")),
    ("kind-over-200", submit_task(kind="k" * 201)),
    ("kind-60k", submit_task(kind="k" * 60_000)),
    ("id-over-1024", submit_task(id="i" * 1025)),
    ("negative-timeout", submit_task(timeout=-1.0)),
    ("zero-timeout", submit_task(timeout=0)),
    ("max-attempts-0", submit_task(max_attempts=0)),
    ("int-id", submit_task(id=7)),
    ("bytes-id", submit_task(id=b"t-1")),
    ("float-difficulty", submit_task(difficulty=3.0)),
    ("bool-difficulty", submit_task(difficulty=True)),
    # brief finished pushes: parallel lists of ids and known result statuses
    ("brief-lengths-differ", pk({"type": "finished", "epoch": "e", "tasks": [], "ids": ["a"]})),
    (
        "brief-unknown-status",
        pk({"type": "finished", "epoch": "e", "tasks": [], "ids": ["a"], "statuses": ["ok"]}),
    ),
    ("brief-flag-not-bool", pk({"type": "watch", "req": 1, "ids": [], "brief": 1})),
]


@pytest.mark.parametrize("data", [d for _, d in MALFORMED], ids=[n for n, _ in MALFORMED])
def test_malformed_input_raises_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError) as err:
        protocol.decode(data)
    assert type(err.value) is ProtocolError
    assert str(err.value)  # a reason a peer or a log can show


def test_field_error_names_the_field_path() -> None:
    with pytest.raises(ProtocolError, match=r"difficulty"):
        protocol.decode(submit_task(difficulty="3"))
    with pytest.raises(ProtocolError, match=r"epoch"):
        protocol.decode(hb(epoch=1))


def test_unknown_type_has_code_unknown_type() -> None:
    with pytest.raises(ProtocolError) as err:
        protocol.decode(pk({"type": "launch_missiles"}))
    assert err.value.code == "unknown_type"
    assert "launch_missiles" in str(err.value)


def test_other_errors_have_code_bad_message() -> None:
    with pytest.raises(ProtocolError) as err:
        protocol.decode(hb(time="5"))
    assert err.value.code == "bad_message"


def test_oversized_input_is_too_large() -> None:
    data = protocol.encode(Bye(reason="x" * 200))
    assert protocol.decode(data, max_bytes=len(data)) == Bye(reason="x" * 200)
    with pytest.raises(ProtocolError) as err:
        protocol.decode(data, max_bytes=len(data) - 1)
    assert err.value.code == "too_large"


def test_default_size_limit_is_max_message_bytes() -> None:
    data = pk({"type": "bye", "reason": "x" * protocol.MAX_MESSAGE_BYTES})
    with pytest.raises(ProtocolError) as err:
        protocol.decode(data)
    assert err.value.code == "too_large"


def test_oversize_check_does_not_parse_the_input() -> None:
    with pytest.raises(ProtocolError) as err:
        protocol.decode(b"\xc1" * 100, max_bytes=10)  # garbage, but too large first
    assert err.value.code == "too_large"


@pytest.mark.parametrize("data", ["ready", None, 42, ["x"]], ids=["str", "none", "int", "list"])
def test_non_bytes_argument_raises_protocol_error(data: Any) -> None:
    with pytest.raises(ProtocolError):
        protocol.decode(data)


def test_decode_does_not_mutate_or_share_state_between_calls() -> None:
    data = protocol.encode(SAMPLES[0])
    first = protocol.decode(data)
    second = protocol.decode(data)
    assert first == second
    assert first is not second


def test_timestamp_ext_type_is_refused() -> None:
    with pytest.raises(ProtocolError):
        protocol.decode(submit_task(payload=msgpack.Timestamp(seconds=1, nanoseconds=0)))


def test_reserved_payload_tag_is_an_unknown_field_in_a_wire_message() -> None:
    with pytest.raises(ProtocolError):
        protocol.decode(pk({"type": "ready", "epoch": "e", "__type__": "Anything"}))


def test_nan_timeout_is_refused_on_the_wire() -> None:
    with pytest.raises(ProtocolError):
        protocol.decode(submit_task(timeout=float("nan")))


# --------------------------------------------------------------------------- fuzzing


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip one byte
            buf[pos % len(buf)] = rng.randrange(256)
        elif op == 1:  # insert random bytes
            buf[pos:pos] = rng.randbytes(rng.randint(1, 3))
        elif op == 2 and buf:  # delete a run
            del buf[pos : pos + rng.randint(1, 3)]
        elif op == 3:  # truncate
            del buf[pos:]
        else:  # interesting msgpack headers
            buf[pos:pos] = bytes([rng.choice([0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC7, 0xD4, 0xDC])])
    return bytes(buf)


def _decode_or_protocol_error(data: bytes) -> bool:
    """True when ``data`` decoded; then re-encoding and decoding again must agree."""
    try:
        msg = protocol.decode(data)
    except ProtocolError:
        return False
    again = protocol.encode(msg)
    assert protocol.encode(protocol.decode(again)) == again
    return True


def test_random_bytes_raise_only_protocol_error() -> None:
    rng = random.Random(20240607)
    for _ in range(3000):
        _decode_or_protocol_error(rng.randbytes(rng.randint(0, 48)))


def test_mutated_valid_messages_raise_only_protocol_error() -> None:
    rng = random.Random(7)
    encodings = [protocol.encode(m) for m in SAMPLES]
    decoded = 0
    for i in range(4000):
        decoded += _decode_or_protocol_error(_mutate(rng, encodings[i % len(encodings)]))
    assert decoded > 0  # some mutations (e.g. inside strings) stay valid messages
    assert decoded < 4000


# --------------------------------------------------------------------------- fast path


def _both_paths(data: bytes) -> tuple[Any, Any]:
    """(compiled builder, schema) on the same decoded map: a record, or FAIL / the error."""
    from protocol.codec import _BY_TYPE, _SCHEMA, unpack
    from protocol.compiled import FAIL, builder

    try:
        body = unpack(data)
    except ProtocolError:
        return None, None
    if type(body) is not dict or type(body.get("type")) is not str:
        return None, None
    cls = _BY_TYPE.get(body.pop("type"))
    if cls is None:
        return None, None
    fast = builder(cls)(dict(body))
    try:
        slow: Any = _SCHEMA.build(cls, body)
    except ProtocolError:
        slow = FAIL
    return fast, slow


@pytest.mark.parametrize(("field", "limit"), [("kind", MAX_NAME), ("id", MAX_TASK_ID)])
def test_task_kinds_and_ids_are_capped_alike_on_both_paths(field: str, limit: int) -> None:
    from protocol.compiled import FAIL

    for length in (1, limit - 1, limit, limit + 1, 60_000):
        fast, slow = _both_paths(submit_task(**{field: "x" * length}))
        assert fast == slow
        assert (fast is not FAIL) == (length <= limit), length
    with pytest.raises(ProtocolError) as err:
        protocol.decode(submit_task(**{field: "x" * 60_000}))
    assert f"longer than {limit} characters" in str(err.value)
    assert len(str(err.value)) < 200  # says why, never echoes the value


def test_the_compiled_fast_path_accepts_exactly_what_the_schema_accepts() -> None:
    rng = random.Random(11)
    encodings = [protocol.encode(m) for m in SAMPLES]
    corpus = [*encodings, *(d for _, d in MALFORMED)]
    corpus += [_mutate(rng, encodings[i % len(encodings)]) for i in range(3000)]
    agreed = 0
    for data in corpus:
        fast, slow = _both_paths(data)
        assert fast == slow, data
        agreed += fast is not None
    assert agreed > len(SAMPLES)  # the comparison ran on real messages, valid and not


def test_pack_gives_packb_bytes_after_a_failure_and_on_every_thread() -> None:
    """``pack`` reuses one Packer per thread: a value it refuses must leave nothing behind."""
    from concurrent.futures import ThreadPoolExecutor

    from protocol.codec import pack

    value = {"id": "t1", "n": 2**40, "x": 1.5, "b": b"\x00\xff", "l": [None, True, "é"]}
    expected = msgpack.packb(value, use_bin_type=True, datetime=False)
    assert pack(value) == expected
    for bad in ({"half": [1, 2, object()]}, {"deep": {"set": {1, 2}}}, [1, "two", 2**64]):
        with pytest.raises(ProtocolError) as info:
            pack(bad)
        assert info.value.code == "encode"
        assert pack(value) == expected  # no bytes of the refused value leak into the next
    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(lambda i: pack({**value, "i": i}), range(200))) == {
            msgpack.packb({**value, "i": i}, use_bin_type=True, datetime=False) for i in range(200)
        }
