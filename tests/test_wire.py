"""The wire seen from outside: a peer written with only zmq and msgpack.

These tests speak the protocol by hand (no taskmesh codec), as a worker in
another language would, and throw bad input at a running manager: it must
answer with clear errors, count them, and keep serving.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgpack
import pytest
import zmq

from protocol import PROTOCOL_VERSION, TaskSpec
from tests.conftest import Cluster
from tests.helpers.ops import HANDLERS, connected, status, submit, wait_done, wait_until


class RawPeer:
    """A DEALER (and optionally a SUB) driven by hand with plain msgpack maps."""

    def __init__(self, port: int, identity: str | None = None) -> None:
        self.ctx = zmq.Context()
        self.id = identity or f"raw-{uuid.uuid4().hex[:8]}"
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.IDENTITY, self.id.encode())
        self.dealer.connect(f"tcp://127.0.0.1:{port}")
        self.sub: zmq.Socket[bytes] | None = None

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
            if sock.poll(int(left * 1000)):
                msg: dict[str, Any] = msgpack.unpackb(sock.recv(), raw=False)
                if msg["type"] == want:
                    return msg
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

    def join(self) -> dict[str, Any]:
        """Full handshake: register, subscribe, answer the probe."""
        welcome = self.register()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(welcome["pub_endpoint"])
        while True:
            probe = self.recv("probe", sock=self.sub)
            if probe["agent_id"] == self.id:
                break
        self.send({"type": "ready", "epoch": welcome["epoch"]})
        self.recv("roster")
        return welcome

    def close(self) -> None:
        for sock in (self.dealer, self.sub):
            if sock is not None:
                sock.close(linger=0)
        self.ctx.term()


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
        ({"agent_id": "someone-else"}, "identity", "identity"),
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
