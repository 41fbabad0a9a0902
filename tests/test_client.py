"""One ``Client`` shared by coroutines, over real sockets (issue 12, item 4).

A status poller, two submit-and-wait flows and a task query run at the same
time on one ``Client``: every request gets its own reply, none waits for
another's or times out.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import msgpack
import zmq

from protocol import StatusReply, TaskSpec, TaskState
from tests.conftest import Cluster
from tests.helpers.ops import HANDLERS, connected, wait_until


def test_one_client_serves_a_status_poller_and_waiting_submits_at_once(cluster: Cluster) -> None:
    cluster.manager()
    cluster.worker("w", 5, *HANDLERS, "--capacity", "2")
    wait_until(connected(cluster, 1), what="the worker")

    async def go() -> tuple[list[StatusReply], list[list[TaskState]], list[TaskState]]:
        async with cluster.client(timeout=3.0) as client:  # a lost reply raises at once
            stop = asyncio.Event()
            polls: list[StatusReply] = []

            async def poll() -> None:
                while not stop.is_set():
                    polls.append(await client.status())
                    await asyncio.sleep(0.01)

            async def work(prefix: str) -> list[TaskState]:
                ids = [f"{prefix}{i}" for i in range(6)]
                await client.submit([TaskSpec(id=i, kind="sleep", payload=0.05) for i in ids])
                return await client.wait(ids, timeout=20)

            poller = asyncio.ensure_future(poll())
            try:
                await asyncio.sleep(0.05)  # the poller is under way
                a, b, queried = await asyncio.gather(
                    work("a"), work("b"), client.tasks(["a0", "never-submitted"])
                )
            finally:
                stop.set()
                await poller
            return polls, [a, b], queried

    polls, waited, queried = cluster.run(go())
    for prefix, states in zip("ab", waited, strict=True):
        assert [s.id for s in states] == [f"{prefix}{i}" for i in range(6)]
        assert all(s.result is not None and s.result.success for s in states)
    assert len(polls) >= 3  # answered all along, between the others' replies
    assert all([w.name for w in reply.workers] == ["w"] for reply in polls)
    assert [s.id for s in queried] == ["a0", "never-submitted"]
    assert queried[1].state == "unknown"


def test_brief_watches_push_statuses_and_wait_still_returns_full_states(
    cluster: Cluster,
) -> None:
    """``count`` (bench, big runs) gets only statuses pushed; ``wait`` on ids that were
    watched brief still returns whole states, results included."""
    cluster.manager()
    cluster.worker("w", 5, *HANDLERS, "--capacity", "4")
    wait_until(connected(cluster, 1), what="the worker")
    good = [TaskSpec(id=f"ok{i}", kind="echo", payload=i) for i in range(20)]
    bad = [TaskSpec(id=f"bad{i}", kind="fail") for i in range(3)]
    later = [TaskSpec(id=f"later{i}", kind="echo", payload=f"p{i}") for i in range(5)]

    async def go() -> tuple[Counter[str], list[TaskState]]:
        async with cluster.client() as client:
            await client.submit(good + bad, watch=True, brief=True)
            tally = await client.count([s.id for s in good + bad], timeout=20)
            await client.submit(later, watch=True, brief=True)
            return tally, await client.wait([s.id for s in later], timeout=20)

    tally, states = cluster.run(go())
    assert tally == Counter({"succeeded": 20, "error": 3})
    assert [s.id for s in states] == [s.id for s in later]
    assert [s.result.output if s.result else None for s in states] == [s.payload for s in later]


def test_a_brief_finished_push_carries_only_ids_and_statuses(cluster: Cluster) -> None:
    """What a client in another language sees (PROTOCOL.md §5.5): ``tasks`` empty,
    ``ids`` and ``statuses`` parallel."""
    cluster.manager()
    cluster.worker("w", 5, *HANDLERS)
    wait_until(connected(cluster, 1), what="the worker")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{cluster.port}")
    tasks = [{"id": "b1", "kind": "echo"}, {"id": "b2", "kind": "fail"}]
    try:
        body = {"type": "submit", "req": 1, "tasks": tasks, "watch": True, "brief": True}
        sock.send(msgpack.packb(body))
        pushed: dict[str, str] = {}
        deadline = time.monotonic() + 20
        while len(pushed) < 2 and time.monotonic() < deadline:
            if not sock.poll(200):
                continue
            msg = msgpack.unpackb(sock.recv())
            if msg["type"] == "finished":
                assert msg["tasks"] == []
                assert len(msg["ids"]) == len(msg["statuses"])
                pushed.update(zip(msg["ids"], msg["statuses"], strict=True))
    finally:
        sock.close()
        ctx.term()
    assert pushed == {"b1": "succeeded", "b2": "error"}
