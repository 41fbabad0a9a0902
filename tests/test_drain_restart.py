"""A draining worker stays draining across a manager restart (issue 11, PROTOCOL.md §9.8).

Draining belongs to the worker, not to one connection: after the manager
restarts, the worker registers again with the task it still runs, and the
new manager instance must give it no new work, neither tasks only it could
take nor tasks another worker is there for.
"""

from __future__ import annotations

import signal

from protocol import TaskSpec, TaskState
from tests.conftest import Cluster
from tests.helpers.ops import (
    HANDLERS,
    connected,
    running_on,
    status,
    submit,
    wait_done,
    wait_until,
)

LONG = 8.0  # seconds: outlasts the drain, the manager restart and the re-registration


def states(cluster: Cluster, ids: list[str]) -> list[TaskState]:
    async def go() -> list[TaskState]:
        async with cluster.client() as c:
            return await c.tasks(ids)

    return cluster.run(go())


def draining(cluster: Cluster) -> bool:
    return any(w.state == "draining" for w in status(cluster).workers)


def test_a_draining_worker_gets_no_new_work_after_a_manager_restart(cluster: Cluster) -> None:
    mgr = cluster.manager()
    drainer = cluster.worker("d", 9, *HANDLERS, "--capacity", "2", "--grace", "30")
    cluster.worker("o", 3, *HANDLERS)
    wait_until(connected(cluster, 2), what="2 workers")
    submit(cluster, [TaskSpec(id="long", kind="sleep", payload=LONG, difficulty=5)])
    wait_until(lambda: running_on(cluster, "long").startswith("d-"), what="long running on d")
    drainer.signal(signal.SIGTERM)
    wait_until(lambda: draining(cluster), what="d draining")

    # Queued when the manager dies, so queued the moment d comes back:
    # tasks only d is skilled for, and tasks o can take (one at a time).
    only_d = [TaskSpec(id=f"only-d-{i}", kind="sleep", payload=0.1, difficulty=8) for i in range(2)]
    anyone = [TaskSpec(id=f"any-{i}", kind="sleep", payload=0.2) for i in range(4)]
    submit(cluster, [*only_d, *anyone])
    mgr.signal(signal.SIGKILL)
    mgr.stop()
    second = cluster.manager()  # same port, same journal
    # And more, submitted to the new instance.
    only_d += [
        TaskSpec(id=f"only-d-after-{i}", kind="sleep", payload=0.1, difficulty=8) for i in range(2)
    ]
    anyone += [TaskSpec(id=f"any-after-{i}", kind="sleep", payload=0.2) for i in range(4)]
    submit(cluster, [*only_d[2:], *anyone[4:]])

    # d finishes its task within the grace and leaves.
    assert drainer.popen.wait(LONG + 30) == 0
    done = {s.id: s for s in wait_done(cluster, ["long", *(t.id for t in anyone)], timeout=60)}
    # The scenario happened: d re-registered with the new instance while draining.
    adopted = ("d holds 1 task(s)", "d still holds 1 task(s)")
    wait_until(lambda: any(a in second.log(10**7) for a in adopted), what="long adopted")

    long = done.pop("long").result
    assert long is not None
    assert (long.status, long.worker, long.attempt) == ("succeeded", "d", 1)
    assert {s.id: s.result.worker for s in done.values() if s.result} == {t.id: "o" for t in anyone}
    # Nothing was ever assigned to d for the tasks only it could take.
    assert [(s.state, s.attempt) for s in states(cluster, [t.id for t in only_d])] == [
        ("queued", 0)
    ] * len(only_d)
    assert "late job" not in drainer.log(10**7)
    counts = status(cluster).counts
    assert counts.get("duplicates", 0) == 0
    assert counts["done"] == 1 + len(anyone)
