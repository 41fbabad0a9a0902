"""Without CURVE a peer can still only be itself (real processes and sockets).

A connection carries one agent; a live agent's id cannot be registered from
another connection (``id_taken``: also two containers started with the same
``--id``); a socket that presents a live connection's ZeroMQ identity is
ignored (no ``ROUTER_HANDOVER``); results are recorded under the registered
worker, whatever the message says.
"""

from __future__ import annotations

import signal
from typing import Any

import msgpack
import pytest
import zmq

from protocol import PROTOCOL_VERSION, TaskSpec
from tests.conftest import Cluster
from tests.helpers.ops import connected, status, submit, wait_done, wait_until
from tests.test_wire import RawPeer


def full_log(cluster: Cluster, index: int) -> str:
    proc = cluster.procs[index]
    proc.log()
    return proc.log_path.read_text(errors="replace")


@pytest.fixture
def peers(cluster: Cluster) -> Any:
    made: list[RawPeer] = []

    def make(identity: str | None = None) -> RawPeer:
        peer = RawPeer(cluster.port, identity)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


def register(agent_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "register",
        "version": PROTOCOL_VERSION,
        "agent_id": agent_id,
        "name": agent_id,
        "workspace_id": "taskmesh",
        **fields,
    }


def test_a_second_worker_with_a_live_workers_id_is_refused_and_takes_over_when_it_leaves(
    cluster: Cluster,
) -> None:
    cluster.manager()
    first = cluster.worker("first", 9, "--id", "dup", "--time-scale", "0.25")
    wait_until(connected(cluster, 1), what="the first worker")
    submit(cluster, [TaskSpec(id="long", difficulty=8)])  # 2 s on the first worker
    second = cluster.worker("second", 9, "--id", "dup", "--time-scale", "0.25")
    wait_until(lambda: "is held by a live worker" in second.log(), what="the refusal")
    (state,) = wait_done(cluster, ["long"])

    assert state.attempt == 1, "the task was taken from its worker and ran again"
    assert state.result is not None
    assert state.result.worker == "first"
    assert [w.name for w in status(cluster).workers] == ["first"]
    assert "disconnected" not in full_log(cluster, 0)
    assert "reconnecting" not in first.log()
    assert second.alive()  # it waits for the id, as a stand-by

    first.signal(signal.SIGTERM)
    wait_until(
        lambda: [w.name for w in status(cluster).workers] == ["second"],
        what="the second worker taking over the id",
    )


def test_a_socket_presenting_a_live_connections_identity_is_ignored(
    cluster: Cluster, peers: Any
) -> None:
    cluster.manager()
    victim = peers("victim-route")
    victim.join()
    impostor = peers("victim-route")  # the very same ZeroMQ identity
    impostor.send({"type": "heartbeat", "epoch": victim.epoch, "time": 1})
    impostor.send(register("victim-route", capacity=1))
    impostor.send({"type": "bye", "reason": "taken over"})
    victim.pump(1.0)  # heartbeats both ways meanwhile
    assert not impostor.dealer.poll(0), "the impostor's messages reached the manager"
    assert [w.id for w in status(cluster).workers] == ["victim-route"]
    assert "disconnected" not in full_log(cluster, 0)

    submit(cluster, [TaskSpec(id="still-mine")])
    assert victim.recv("assign")["jobs"][0]["task"]["id"] == "still-mine"


def test_one_connection_registers_one_agent(cluster: Cluster, peers: Any) -> None:
    cluster.manager()
    peer = peers()
    peer.join()
    peer.send(register("someone-else"))
    error = peer.recv("error")
    assert error["code"] == "identity"
    assert peer.id in error["message"]
    assert [w.id for w in status(cluster).workers] == [peer.id]


@pytest.mark.parametrize("fields", [{"skill": 11}, {"capacity": 10**9}, {"skill": -1}])
def test_registrations_out_of_range_are_refused(
    cluster: Cluster, peers: Any, fields: dict[str, Any]
) -> None:
    cluster.manager()
    peer = peers()
    peer.send(register(peer.id, **fields))
    error = peer.recv("error")
    assert error["code"] == "registration"
    assert status(cluster).counts["registrations_refused.registration"] == 1


def test_a_result_is_recorded_under_the_registered_worker_not_the_message(
    cluster: Cluster, peers: Any
) -> None:
    cluster.manager()
    peer = peers()
    peer.join(name="honest-name", kinds=["echo"])
    submit(cluster, [TaskSpec(id="t", kind="echo")])
    assert peer.recv("assign")["jobs"][0]["task"]["id"] == "t"
    forged = {
        "task_id": "t",
        "attempt": 1,
        "worker": "famous-worker",
        "worker_id": "someone-else",
        "success": True,
        "status": "succeeded",
        "output": "done",
    }
    peer.send({"type": "results", "results": [forged]})
    peer.recv("result_ack")
    (state,) = wait_done(cluster, ["t"])
    assert state.result is not None
    assert (state.result.worker, state.result.worker_id) == ("honest-name", peer.id)
    assert state.worker == peer.id


def test_a_peer_that_never_reads_its_replies_slows_nobody(cluster: Cluster, peers: Any) -> None:
    """A DEALER floods ``status`` requests and reads none of the replies; meanwhile
    another client's requests are all answered, and the dropped replies are counted."""
    cluster.manager()
    flooder = peers()
    flooder.dealer.setsockopt(zmq.RCVBUF, 4096)
    body = msgpack.packb({"type": "status", "req": 1})
    sent = 0
    for _ in range(100):  # bounded: a few seconds
        for _ in range(2000):
            try:
                flooder.dealer.send(body, zmq.NOBLOCK)
            except zmq.Again:
                break
            sent += 1
        counts = status(cluster).counts  # the other client: a timeout here fails the test
        if counts.get("replies_dropped", 0) > 0:
            break
    assert status(cluster).counts["replies_dropped"] > 0, f"{sent} requests sent"
    assert "Traceback" not in full_log(cluster, 0)
