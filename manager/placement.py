"""Placement: which connected worker runs which queued task.  Pure; no I/O.

One pass over the book's queue with the chosen policy, counting the jobs
handed out so that no worker is given more than its free capacity.
"""

from __future__ import annotations

from collections.abc import Iterable

from manager.registry import AgentRecord
from manager.scheduler import Candidate, Policy
from manager.taskbook import TaskBook
from protocol import AgentState, Job, TaskSpec


def place(
    book: TaskBook,
    agents: Iterable[AgentRecord],
    policy: Policy,
    fallback: bool,
    now: float,
) -> dict[str, list[Job]]:
    """Start what can start now; returns the new jobs by worker id.

    Each chosen worker's ``running`` map is updated with its new jobs.
    """
    workers = {r.id: r for r in agents if r.capacity > 0 and r.state == AgentState.CONNECTED}
    if not book.queued or not workers:
        return {}
    load = {wid: len(r.running) for wid, r in workers.items()}

    def candidates() -> list[Candidate]:
        return [
            Candidate(id=wid, skill=r.skill, capacity=r.capacity, running=load[wid], kinds=r.kinds)
            for wid, r in workers.items()
        ]

    def pick(spec: TaskSpec, tried: set[str]) -> str | None:
        wid = policy(spec, candidates(), tried, fallback)
        if wid is not None:
            load[wid] += 1
        return wid

    def room() -> bool:
        return any(load[w] < r.capacity for w, r in workers.items())

    jobs: dict[str, list[Job]] = {}
    for wid, job in book.schedule(pick, room, now):
        workers[wid].running[job.task.id] = job.attempt
        jobs.setdefault(wid, []).append(job)
    return jobs
