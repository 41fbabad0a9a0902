"""What the end-to-end tests do to a running cluster, as plain blocking calls."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from protocol import StatusReply, TaskSpec, TaskState
from taskmesh.procs import Proc
from tests.conftest import Cluster

HANDLERS = ("--handlers", "tests.helpers.handlers")


def wait_until(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def status(cluster: Cluster) -> StatusReply:
    async def go() -> StatusReply:
        async with cluster.client() as c:
            return await c.status()

    return cluster.run(go())


def connected(cluster: Cluster, count: int) -> Callable[[], bool]:
    return lambda: sum(w.state == "connected" for w in status(cluster).workers) >= count


def submit(cluster: Cluster, tasks: list[TaskSpec]) -> list[str]:
    async def go() -> list[str]:
        async with cluster.client() as c:
            return (await c.submit(tasks)).accepted

    return cluster.run(go())


def wait_done(cluster: Cluster, ids: list[str], timeout: float = 30.0) -> list[TaskState]:
    async def go() -> list[TaskState]:
        async with cluster.client(timeout=2) as c:
            return await c.wait(ids, timeout=timeout)

    return cluster.run(go())


def running_on(cluster: Cluster, task_id: str) -> str:
    async def go() -> str:
        async with cluster.client() as c:
            (state,) = await c.tasks([task_id])
            return state.worker if state.state == "running" else ""

    return cluster.run(go())


def freeze_or_kill_holder(
    cluster: Cluster, task_id: str, workers: dict[str, Proc], sig: signal.Signals
) -> str:
    """Wait until ``task_id`` runs, send ``sig`` to the worker holding it; return its name.

    ``workers`` maps worker names to processes (agent ids start with the name).
    """
    wait_until(lambda: running_on(cluster, task_id) != "", what=f"{task_id} running")
    holder = running_on(cluster, task_id)
    name = next(n for n in workers if holder.startswith(f"{n}-"))
    workers[name].signal(sig)
    return name
