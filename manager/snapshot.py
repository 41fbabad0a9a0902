"""The manager's status as one ``StatusReply``: for ``status``, ``inspect`` and the status page.

Built from what is kept as tasks move (the book's counts, the finished
tallies, ``Stats``), plus one pass over the workers and one over the
``(kind, difficulty)`` queues for the waiting reasons: it costs the same
with any number of tasks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from manager.waiting import waiting_counts
from protocol import ResultStatus, StatusReply, TaskFilter, TaskStatus

if TYPE_CHECKING:
    from manager.service import TaskService

#: Running task ids listed per worker in a status, and in all (a reply stays small).
IDS_PER_WORKER = 20
IDS_IN_STATUS = 2000
#: Running task ids listed for a worker asked for by id or name (``inspect``).
IDS_FOR_ONE = 1000


def status_reply(
    service: TaskService, req: int = 0, worker: str = "", viewer: str | None = None
) -> StatusReply:
    """The status; ``worker`` (an id or a name): only those agents, with more of their ids.

    ``viewer`` (a CURVE client key): the running task ids listed are its own only.
    """
    admin = service.admin
    now = admin.clock()
    recs = [
        rec
        for rec in admin.registry
        if rec.capacity > 0 and (not worker or worker in (rec.id, rec.name))
    ]
    share = min(IDS_PER_WORKER, IDS_IN_STATUS // max(1, len(recs)))
    ids = IDS_FOR_ONE if worker else share
    workers = [service.stats.worker_info(rec, now, ids, viewer) for rec in recs]
    finished = service.done_before + service.book.finished
    done = sum(finished.values())
    succeeded = finished.get(ResultStatus.SUCCEEDED, 0)
    counts: dict[str, int] = dict(service.book.counts())
    counts.update(
        {
            TaskStatus.DONE: done,
            ResultStatus.SUCCEEDED: succeeded,
            TaskFilter.FAILED: done - succeeded,
            "awaiting_workers": service.waiting_for_workers,
            "watched": len(service.watchers),
            "gaps": admin.gaps.missed,
            "journal_commits": service.store.commits,
            "assignments": service.stats.assignments,
            "reruns": sum(service.stats.reruns.values()),
        }
    )
    counts.update(admin.counters)
    return StatusReply(
        req=req,
        manager_id=admin.id,
        epoch=admin.epoch,
        policy=service.config.policy,
        workers=workers,
        counts=counts,
        uptime=now - admin.started,
        manager_name=admin.name,
        results={str(status): n for status, n in finished.items() if n},
        rate=service.stats.rate(now),
        waiting=waiting_counts(service.book, service.unmatched.capable()),
    )
