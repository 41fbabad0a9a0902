"""One ``Client`` shared by coroutines, over real sockets (issue 12, item 4).

A status poller, two submit-and-wait flows and a task query run at the same
time on one ``Client``: every request gets its own reply, none waits for
another's or times out.
"""

from __future__ import annotations

import asyncio

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
