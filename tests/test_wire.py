"""The wire seen from outside: peers written with only zmq and msgpack.

These tests speak the protocol by hand (no taskmesh codec), as a program in
another language would.  A hand-written worker throws bad input at a
running manager: it must answer with clear errors, count them, and keep
serving.  A hand-written manager drives a real Python worker: its results
must be exactly those PROTOCOL.md specifies (§4.4, §9.3, §6.5).
"""

from __future__ import annotations

import signal
import struct
import time
import uuid
from typing import Any

import msgpack
import pytest
import zmq

from protocol import (
    MAX_ITEM_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_TASK_ID,
    PROTOCOL_VERSION,
    TaskSpec,
    TaskState,
)
from tests.conftest import Cluster
from tests.helpers.ops import HANDLERS, connected, status, submit, wait_done, wait_until


class RawPeer:
    """A DEALER (and optionally a SUB) driven by hand with plain msgpack maps.

    Once joined it heartbeats every ``interval`` (from ``welcome``) while it
    waits in ``recv`` or ``pump``.
    """

    def __init__(self, port: int, identity: str | None = None) -> None:
        self.ctx = zmq.Context()
        self.id = identity or f"raw-{uuid.uuid4().hex[:8]}"
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.IDENTITY, self.id.encode())
        self.dealer.connect(f"tcp://127.0.0.1:{port}")
        self.sub: zmq.Socket[bytes] | None = None
        self.epoch = ""
        self.interval = 0.1
        self.last_beat = 0.0
        self.seen: list[dict[str, Any]] = []  # what recv skipped and pump read

    def beat(self) -> None:
        if self.epoch and time.monotonic() - self.last_beat >= self.interval:
            self.last_beat = time.monotonic()
            self.send({"type": "heartbeat", "epoch": self.epoch, "time": time.time_ns()})

    def pump(self, seconds: float) -> None:
        """Heartbeat and read for ``seconds`` (what arrives goes to ``seen``)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.beat()
            if self.dealer.poll(int(min(left, 0.02) * 1000)):
                self.seen.append(msgpack.unpackb(self.dealer.recv(), raw=False))

    def send(self, body: dict[str, Any]) -> None:
        self.dealer.send(msgpack.packb(body, use_bin_type=True))

    def send_raw(self, *frames: bytes) -> None:
        self.dealer.send_multipart(list(frames))

    def recv(
        self, want: str, timeout: float = 5.0, sock: zmq.Socket[bytes] | None = None
    ) -> dict[str, Any]:
        """The next message of type ``want`` (others, e.g. heartbeats, are skipped)."""
        sock = sock or self.dealer
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.beat()
            if sock.poll(int(min(left, 0.02) * 1000)):
                msg: dict[str, Any] = msgpack.unpackb(sock.recv(), raw=False)
                if msg["type"] == want:
                    return msg
                self.seen.append(msg)
        raise AssertionError(f"no {want!r} within {timeout}s")

    def register(self, **fields: Any) -> dict[str, Any]:
        body = {
            "type": "register",
            "version": PROTOCOL_VERSION,
            "agent_id": self.id,
            "name": self.id,
            "role": "worker",
            "workspace_id": "taskmesh",
            "skill": 5,
            "capacity": 1,
            "kinds": ["simulate"],
        }
        body.update(fields)
        self.send(body)
        return self.recv("welcome")

    def join(self, drain: float | None = None, **fields: Any) -> dict[str, Any]:
        """Full handshake: register, subscribe, answer the probe (again after a restart).

        A draining peer (``drain`` = its grace) sends ``drain`` right before
        ``ready``, every time it joins (PROTOCOL.md §9.8).
        """
        self.epoch = ""  # no heartbeats until the new epoch is known
        welcome = self.register(**fields)
        if self.sub is not None:
            self.sub.close(linger=0)
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(welcome["pub_endpoint"])
        while True:
            probe = self.recv("probe", sock=self.sub)
            if probe["agent_id"] == self.id:
                break
        if drain is not None:
            self.send({"type": "drain", "grace": drain})
        self.send({"type": "ready", "epoch": welcome["epoch"]})
        self.epoch, self.interval = welcome["epoch"], welcome["heartbeat_interval"]
        self.recv("roster")
        return welcome

    def close(self) -> None:
        for sock in (self.dealer, self.sub):
            if sock is not None:
                sock.close(linger=0)
        self.ctx.term()


class RawManager:
    """A manager's ROUTER and PUB driven by hand, talking to one worker.

    It heartbeats the worker (on the ROUTER and the PUB) while it waits in
    ``recv``; ``new_epoch`` plays
    a manager restart (the worker registers again on the same DEALER).
    """

    def __init__(self, interval: float = 0.1, liveness: int = 10) -> None:
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.pub = self.ctx.socket(zmq.PUB)
        for sock in (self.router, self.pub):
            sock.setsockopt(zmq.LINGER, 0)
        self.port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.pub_port = self.pub.bind_to_random_port("tcp://127.0.0.1")
        self.interval, self.liveness = interval, liveness
        self.epoch = uuid.uuid4().hex[:16]
        self.worker = b""  # identity of the worker, once it registered
        self.last_beat = 0.0
        self.heartbeats: list[dict[str, Any]] = []

    def send(self, body: dict[str, Any], **pack: Any) -> None:
        self.router.send_multipart([self.worker, msgpack.packb(body, use_bin_type=True, **pack)])

    def new_epoch(self) -> None:
        self.epoch = uuid.uuid4().hex[:16]
        self.last_beat = 0.0  # the next heartbeat, with the new epoch, goes at once

    def recv(
        self, want: str, timeout: float = 15.0, where: Any = None
    ) -> tuple[dict[str, Any], bytes]:
        """The next message of type ``want`` (matching ``where``) and its bytes."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self.worker and time.monotonic() - self.last_beat >= self.interval:
                self.last_beat = time.monotonic()
                beat = {"type": "heartbeat", "epoch": self.epoch, "time": time.time_ns()}
                self.send(beat)
                self.pub.send(msgpack.packb(beat))  # on PUB too: the SUB's proof of life (§7)
            if self.router.poll(int(min(left, 0.02) * 1000)):
                ident, body = self.router.recv_multipart()
                msg: dict[str, Any] = msgpack.unpackb(body, raw=False)
                if msg["type"] == "heartbeat":
                    self.heartbeats.append(msg)
                if msg["type"] == want and (where is None or where(msg)):
                    self.worker = ident
                    return msg, body
        raise AssertionError(f"no {want!r} within {timeout}s")

    def accept(self) -> dict[str, Any]:
        """Welcome the next ``register``, probe until ``ready``; return the register."""
        register, _ = self.recv("register")
        self.send(
            {
                "type": "welcome",
                "version": PROTOCOL_VERSION,
                "manager_id": "raw-manager",
                "manager_name": "raw-manager",
                "epoch": self.epoch,
                "pub_endpoint": f"tcp://127.0.0.1:{self.pub_port}",
                "heartbeat_interval": self.interval,
                "liveness": self.liveness,
            }
        )
        probe = {"type": "probe", "agent_id": register["agent_id"], "epoch": self.epoch}
        for _ in range(100):
            self.pub.send(msgpack.packb(probe))
            try:
                self.recv("ready", timeout=0.1, where=lambda m: m["epoch"] == self.epoch)
            except AssertionError:
                continue
            self.send(
                {"type": "roster", "agents": [{"id": "raw-manager", "name": "m", "role": "admin"}]}
            )
            return register
        raise AssertionError("the worker never answered its probe")

    def assign(self, *jobs: dict[str, Any], **pack: Any) -> None:
        self.send({"type": "assign", "epoch": self.epoch, "jobs": list(jobs)}, **pack)

    def results(
        self, count: int, timeout: float = 15.0
    ) -> tuple[dict[tuple[str, int], dict[str, Any]], bytes]:
        """Read (and acknowledge) results until ``count`` attempts reported; all bytes read."""
        got: dict[tuple[str, int], dict[str, Any]] = {}
        raw = b""
        while len(got) < count:
            msg, body = self.recv("results", timeout)
            raw += body
            keys = [{"task_id": r["task_id"], "attempt": r["attempt"]} for r in msg["results"]]
            got.update({(r["task_id"], r["attempt"]): r for r in msg["results"]})
            self.send({"type": "result_ack", "keys": keys})
        return got, raw

    def close(self) -> None:
        self.router.close(linger=0)
        self.pub.close(linger=0)
        self.ctx.term()


def job(task_id: str, kind: str, attempt: int = 1, **spec: Any) -> dict[str, Any]:
    return {"task": {"id": task_id, "kind": kind, **spec}, "attempt": attempt}


def typed(value: Any) -> Any:
    """``value`` with every msgpack family spelled out: ``1`` and ``1.0`` differ here."""
    if isinstance(value, dict):
        return ("map", sorted(((k, typed(v)) for k, v in value.items()), key=lambda kv: kv[0]))
    if isinstance(value, list):
        return ("array", [typed(v) for v in value])
    return (type(value).__name__, value)


RESULT_FIELDS = {
    "task_id",
    "attempt",
    "worker",
    "worker_id",
    "success",
    "status",
    "output",
    "error",
    "started",
    "finished",
    "skill",
}


@pytest.fixture
def raw_manager(cluster: Cluster) -> Any:
    mgr = RawManager()
    cluster.port = mgr.port  # workers the test starts connect to it
    yield mgr
    cluster.stop_all()
    mgr.close()


@pytest.fixture
def raw(cluster: Cluster) -> Any:
    cluster.manager()
    peers: list[RawPeer] = []

    def make(identity: str | None = None) -> RawPeer:
        peer = RawPeer(cluster.port, identity)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


def test_a_hand_written_worker_runs_a_task(cluster: Cluster, raw: Any) -> None:
    peer = raw()
    welcome = peer.join()
    assert welcome["version"] == PROTOCOL_VERSION
    submit(cluster, [TaskSpec(id="by-hand", difficulty=3, payload={"x": 1})])
    assign = peer.recv("assign")
    (job,) = assign["jobs"]
    assert job["task"]["id"] == "by-hand"
    assert job["task"]["payload"] == {"x": 1}
    assert job["attempt"] == 1
    result = {
        "task_id": "by-hand",
        "attempt": 1,
        "worker": peer.id,
        "worker_id": peer.id,
        "success": True,
        "status": "succeeded",
        "output": [1, 2, 3],
    }
    peer.send({"type": "results", "results": [result]})
    ack = peer.recv("result_ack")
    assert ack["keys"] == [{"task_id": "by-hand", "attempt": 1}]
    (state,) = wait_done(cluster, ["by-hand"])
    assert state.result is not None
    assert state.result.output == [1, 2, 3]


def test_results_for_tasks_not_assigned_to_the_sender_are_not_recorded(
    cluster: Cluster, raw: Any
) -> None:
    cluster.worker("honest", 5, *HANDLERS)
    wait_until(connected(cluster, 1), what="worker")
    submit(cluster, [TaskSpec(id="theirs", kind="sleep", payload=0.5)])
    thief = raw()
    thief.join()
    forged = {
        "task_id": "theirs",
        "attempt": 1,
        "worker": "thief",
        "worker_id": thief.id,
        "success": False,
        "status": "failed",
    }
    thief.send({"type": "results", "results": [forged]})
    thief.recv("result_ack")  # acknowledged so it stops re-sending, but not recorded
    (state,) = wait_done(cluster, ["theirs"])
    assert state.result is not None
    assert state.result.worker == "honest"
    assert state.result.success
    assert status(cluster).counts["results_stale"] == 1


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"version": PROTOCOL_VERSION + 1}, "version", "not supported"),
        ({"workspace_id": "elsewhere"}, "workspace", "elsewhere"),
        ({"agent_id": ""}, "identity", "agent_id"),
    ],
)
def test_refused_registrations_get_a_clear_error(
    raw: Any, fields: dict[str, Any], code: str, words: str
) -> None:
    peer = raw()
    peer.send(
        {
            "type": "register",
            "version": PROTOCOL_VERSION,
            "agent_id": peer.id,
            "name": "x",
            "workspace_id": "taskmesh",
            **fields,
        }
    )
    error = peer.recv("error")
    assert error["code"] == code
    assert words in error["message"]


def test_bad_input_is_answered_counted_and_never_fatal(cluster: Cluster, raw: Any) -> None:
    peer = raw()
    bad: list[tuple[bytes, ...]] = [
        (b"\xc1garbage",),
        (msgpack.packb([1, 2, 3]),),
        (msgpack.packb({"type": "no-such-type"}),),
        (msgpack.packb({"type": "heartbeat", "epoch": 7, "time": "now"}),),
        (msgpack.packb({"type": "submit", "req": 1, "tasks": [{"id": "x", "difficulty": 99}]}),),
        (msgpack.packb({"type": "welcome"}),),
        (b"a", b"b"),
    ]
    for frames in bad:
        peer.send_raw(*frames)
    codes = [peer.recv("error")["code"] for _ in range(len(bad) - 1)]
    assert codes == [
        "bad_message",
        "bad_message",
        "unknown_type",
        "bad_message",
        "bad_message",
        "bad_message",
    ]
    # A frame over the size cap makes ZeroMQ drop that connection (MAXMSGSIZE);
    # the DEALER reconnects by itself, and the manager still answers it: a
    # message from a peer that never registered asks it to register.
    peer.send_raw(b"\x00" * (2 << 20))
    for _ in range(20):  # what was in flight when the connection dropped is lost
        peer.send({"type": "heartbeat", "epoch": "x", "time": 1})
        try:
            reply = peer.recv("error", timeout=0.5)
        except AssertionError:
            continue
        break
    else:
        raise AssertionError("the manager never answered after the oversized frame")
    assert reply["code"] == "unknown_peer"
    counts = status(cluster).counts
    assert counts["bad_messages"] == len(bad)
    # The manager still works for everybody else.
    cluster.worker("fine", 5, "--time-scale", "0.01")
    submit(cluster, [TaskSpec(id="still-ok", difficulty=1)])
    (state,) = wait_done(cluster, ["still-ok"])
    assert state.result is not None
    assert state.result.success


def test_spoofed_sender_is_refused(raw: Any) -> None:
    peer = raw()
    peer.join()
    peer.send({"type": "broadcast", "sender": "admin", "seq": 1, "time": 1, "data": b"x"})
    error = peer.recv("error")
    assert error["code"] == "spoofed_sender"


def test_request_ids_longer_than_any_task_id_are_refused_and_never_echoed(
    cluster: Cluster, raw: Any
) -> None:
    peer = raw()
    huge = "x" * 60_000  # a task id is at most MAX_TASK_ID (1024) characters
    longest = "y" * MAX_TASK_ID
    requests: list[dict[str, Any]] = [
        {"type": "cancel", "req": 1, "ids": ["a", huge]},
        {"type": "retry", "req": 2, "ids": [huge]},
        {"type": "history", "req": 3, "id": huge},
        {"type": "watch", "req": 4, "ids": [huge, "b"]},
        {"type": "tasks", "req": 5, "ids": [huge]},
    ]
    for req in requests:
        peer.send(req)
        error = peer.recv("error")
        assert (error["code"], error["req"]) == ("bad_request", req["req"])
        assert f"at most {MAX_TASK_ID} characters" in error["message"]
        assert len(error["message"]) < 200
    # The longest id a task can have is fine; what is echoed stays bounded.
    peer.send({"type": "cancel", "req": 6, "ids": [longest]})
    reply = peer.recv("action_reply")
    assert [(r["id"], r["code"]) for r in reply["refused"]] == [(longest, "unknown")]
    assert len(reply["refused"][0]["message"]) < 100
    peer.send({"type": "watch", "req": 7, "ids": [longest]})
    assert peer.recv("watch_reply")["unknown"] == [longest]
    peer.send({"type": "history", "req": 8, "id": longest})
    assert peer.recv("history_reply")["task"]["state"] == "unknown"
    assert [m for m in peer.seen if m["type"] == "error"] == []
    assert cluster.procs[0].alive()


# ---------------------------------------------------------------------------
# A real Python worker seen from a hand-written manager (PROTOCOL.md §9.3)

ECHO_PAYLOAD = {
    "z-int": 1,
    "float": 1.0,
    "negative": -7,
    "uint64": 2**64 - 1,
    "int64": -(2**63),
    "ns": 1795846051169170498,
    "str": "é",
    "bin": b"\x00\xff",
    "nil": None,
    "bool": True,
    "list": [1, 1.0, "1", b"1", [], {}],
    "map": {"b": [2.5], "a": {}},
}


def test_a_python_worker_reports_the_builtin_kinds_as_specified(
    cluster: Cluster, raw_manager: RawManager
) -> None:
    mgr = raw_manager
    cluster.worker("spec", 5, "--time-scale", "0.05", "--capacity", "5")
    register = mgr.accept()
    assert {"echo", "simulate"} <= set(register["kinds"])
    assert "resize" not in register["kinds"]
    mgr.assign(
        job("sim-ok", "simulate", difficulty=3),
        job("sim-low", "simulate", attempt=2, difficulty=7),
        job("echo", "echo", difficulty=10, payload=ECHO_PAYLOAD),
        job("resize", "resize"),
        job("slow", "simulate", difficulty=10, timeout=0.1),
    )
    mgr.assign(job("echo32", "echo", payload=1.5), use_single_float=True)  # a float32 payload
    results, raw_bytes = mgr.results(6)

    def failure(type_: str, message: str) -> dict[str, Any]:
        return {"type": type_, "message": message, "traceback": ""}

    expected = {
        ("sim-ok", 1): ("succeeded", {"skill": 5, "difficulty": 3}, None),
        ("sim-low", 2): ("failed", None, failure("TaskFailed", "skill 5 is below difficulty 7")),
        ("echo", 1): ("succeeded", ECHO_PAYLOAD, None),
        ("echo32", 1): ("succeeded", 1.5, None),
        ("resize", 1): ("no_handler", None, failure("NoHandler", "no handler for 'resize'")),
        ("slow", 1): ("timeout", None, failure("Timeout", "over 0.1s")),
    }
    assert set(results) == set(expected)
    for (task_id, attempt), (status_, output, error) in expected.items():
        result = results[task_id, attempt]
        assert set(result) == RESULT_FIELDS  # the Python encoder writes every field
        times = {k: result.pop(k) for k in ("started", "finished")}
        assert typed(result) == typed(
            {
                "task_id": task_id,
                "attempt": attempt,
                "worker": "spec",
                "worker_id": register["agent_id"],
                "success": status_ == "succeeded",
                "status": status_,
                "output": output,
                "error": error,
                "skill": 5,
            }
        ), task_id
        assert type(times["started"]) is float
        assert type(times["finished"]) is float
        assert 0 < times["started"] <= times["finished"]
        if task_id == "sim-low":  # slept difficulty x time-scale before failing
            assert times["finished"] - times["started"] >= 7 * 0.05
    # Floats go back as float64, whatever width they came in.
    assert b"\xcb" + struct.pack(">d", 1.5) in raw_bytes
    assert b"\xca" + struct.pack(">f", 1.5) not in raw_bytes
    # Unix-ns times travel as 64-bit ints, never floats (§3.6).
    assert mgr.heartbeats
    assert all(type(b["time"]) is int and b["time"] > 2**53 for b in mgr.heartbeats)


def test_a_python_worker_holds_jobs_waiting_for_a_slot(
    cluster: Cluster, raw_manager: RawManager
) -> None:
    mgr = raw_manager
    cluster.worker("slots", 5, "--time-scale", "0.5", "--capacity", "1")
    mgr.accept()
    mgr.assign(job("first", "simulate", difficulty=3), job("second", "simulate", difficulty=3))
    # One runs, one waits for the only slot: both count as running (§5.2).
    mgr.recv("heartbeat", where=lambda m: m["running"] == 2)
    mgr.new_epoch()  # as if the manager restarted: the worker registers again
    register = mgr.accept()
    assert sorted((k["task_id"], k["attempt"]) for k in register["holding"]) == [
        ("first", 1),
        ("second", 1),
    ]
    results, _ = mgr.results(2)
    assert {k: r["status"] for k, r in results.items()} == {
        ("first", 1): "succeeded",
        ("second", 1): "succeeded",
    }


def test_holding_keeps_a_job_waiting_for_a_slot_assigned_across_a_restart(
    cluster: Cluster,
) -> None:
    slow = ("--heartbeat-interval", "0.5")  # a raw peer heartbeats only while it waits
    mgr = cluster.manager(*slow)
    cluster.worker("idle", 5)  # would take the jobs if they were re-queued
    wait_until(connected(cluster, 1), what="worker")
    peer = RawPeer(cluster.port)
    try:
        peer.join(skill=1, capacity=2)  # best-fit: the least skilled worker gets both
        ids = submit(cluster, [TaskSpec(id="held-running"), TaskSpec(id="held-waiting")])
        jobs: list[dict[str, Any]] = []
        while len(jobs) < 2:
            jobs += peer.recv("assign")["jobs"]
        held = [{"task_id": j["task"]["id"], "attempt": j["attempt"]} for j in jobs]
        assert sorted(h["task_id"] for h in held) == sorted(ids)
        mgr.signal(signal.SIGKILL)
        mgr.stop()
        cluster.manager(*slow)
        # Back with room for one: one job runs, the other waits for the slot.
        peer.join(skill=1, capacity=1, holding=held)
        peer.pump(2 * 0.5 * 3 + 1 + 0.5)  # past the wait for orphans (§9.9)

        async def look() -> list[TaskState]:
            async with cluster.client() as c:
                return await c.tasks(ids)

        states = cluster.run(look())
        assert [(s.state, s.worker, s.attempt) for s in states] == [("running", peer.id, 1)] * 2
        (me,) = [w for w in status(cluster).workers if w.id == peer.id]
        assert (me.running, me.capacity) == (2, 1)
        results = [
            {**h, "worker": peer.id, "worker_id": peer.id, "success": True, "status": "succeeded"}
            for h in held
        ]
        peer.send({"type": "results", "results": results})
        peer.recv("result_ack")
        done = wait_done(cluster, ids)
        assert all(s.result is not None and s.result.worker == peer.id for s in done)
        assert all(s.attempt == 1 for s in done)
    finally:
        peer.close()


def test_a_hand_written_worker_stays_draining_across_a_manager_restart(
    cluster: Cluster,
) -> None:
    """PROTOCOL.md §9.8, followed by hand: ``drain`` again right before every ``ready``."""
    slow = ("--heartbeat-interval", "0.5")  # a raw peer heartbeats only while it waits
    grace = 30.0
    mgr = cluster.manager(*slow)
    peer = RawPeer(cluster.port)
    try:
        peer.join(capacity=2)
        submit(cluster, [TaskSpec(id="long")])
        (held_job,) = peer.recv("assign")["jobs"]
        held = [{"task_id": "long", "attempt": held_job["attempt"]}]
        assert held == [{"task_id": "long", "attempt": 1}]
        peer.send({"type": "drain", "grace": grace})

        def my_state() -> str:
            peer.pump(0.1)
            return next((w.state for w in status(cluster).workers if w.id == peer.id), "")

        wait_until(lambda: my_state() == "draining", what="the peer draining")
        # Work it has a free slot and the skill for, queued when the manager dies.
        queued = submit(cluster, [TaskSpec(id=f"queued-{i}") for i in range(3)])
        mgr.signal(signal.SIGKILL)
        mgr.stop()
        cluster.manager(*slow)  # same port, same journal, new epoch

        # Its heartbeats reach an instance that never saw it: unknown_peer (§7, §10).
        def told_unknown() -> bool:
            peer.pump(0.1)
            return any(m["type"] == "error" and m["code"] == "unknown_peer" for m in peer.seen)

        wait_until(told_unknown, what="unknown_peer from the new instance")
        peer.seen.clear()
        peer.join(drain=grace, capacity=2, holding=held)
        assert my_state() == "draining"
        peer.pump(2 * 0.5 * 3 + 1 + 0.5)  # past the wait for orphans (§9.9)
        assert [m for m in peer.seen if m["type"] == "assign"] == []
        assert my_state() == "draining"

        async def look(ids: list[str]) -> list[TaskState]:
            async with cluster.client() as c:
                return await c.tasks(ids)

        assert [(s.state, s.attempt) for s in cluster.run(look(queued))] == [("queued", 0)] * 3
        (long,) = cluster.run(look(["long"]))
        assert (long.state, long.worker, long.attempt) == ("running", peer.id, 1)

        result = {**held[0], "worker": peer.id, "worker_id": peer.id}
        peer.send(
            {"type": "results", "results": [{**result, "success": True, "status": "succeeded"}]}
        )
        assert peer.recv("result_ack")["keys"] == held
        peer.send({"type": "bye", "reason": "stopped; cancelled 0"})
        (done,) = wait_done(cluster, ["long"])
        assert done.result is not None
        assert (done.result.worker_id, done.attempt, done.result.success) == (peer.id, 1, True)
        counts = status(cluster).counts
        assert (counts["done"], counts.get("duplicates", 0)) == (1, 0)
        # The queued work was runnable all along: a worker that is not draining takes it.
        cluster.worker("after", 5, "--time-scale", "0.01")
        assert all(s.result and s.result.worker == "after" for s in wait_done(cluster, queued))
    finally:
        peer.close()


def test_an_output_over_the_limits_is_an_error_without_output(
    cluster: Cluster, raw_manager: RawManager
) -> None:
    mgr = raw_manager
    worker = cluster.worker("big", 5, *HANDLERS, "--capacity", "2")
    mgr.accept()
    mgr.assign(
        job("over-item", "big", payload=2 * MAX_ITEM_BYTES),
        job("over-message", "big", payload=2 * MAX_MESSAGE_BYTES),
    )
    results, _ = mgr.results(2, timeout=5)
    for result in results.values():
        assert (result["status"], result["output"]) == ("error", None)
        assert result["error"]["type"] == "ProtocolError"
        assert "over the 262144-byte limit" in result["error"]["message"]
    assert worker.alive()
