"""A restarted manager's journal: tasks it resumes, and running tasks waiting for their worker.

Queued tasks are queued again (one waiting out a retry backoff waits for
what is left of it).  A task the journal shows running stays with its
worker (an *orphan*) until that worker re-registers and says, in
``holding``, that it still has the attempt; orphans not claimed within the
deadline are released like the tasks of a lost worker.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from loguru import logger

from manager.registry import AgentRecord
from manager.store import Store
from manager.taskbook import Live, TaskBook, manager_result
from protocol import Register, ResultKey, ResultStatus, TaskResult, TaskStatus

if TYPE_CHECKING:
    from manager.service import TaskService


class Orphans:
    """Running tasks read from the journal whose worker has not come back yet."""

    def __init__(self) -> None:
        #: task id -> (worker id, attempt, worker key)
        self._waiting: dict[str, tuple[str, int, str]] = {}
        self.deadline = 0.0

    def __len__(self) -> int:
        return len(self._waiting)

    def resume(self, store: Store, book: TaskBook, now: float, patience: float) -> None:
        """Fill ``book`` from ``store``; orphans wait ``patience`` seconds for their worker."""
        counts: Counter[str] = Counter()
        wall = time.time()
        for row in store.unfinished():
            task = Live(
                spec=row.spec,
                seq=row.seq,
                state=row.state,
                attempt=row.attempt,
                owner=row.owner,
                base=row.base,
                retried=row.retried,
            )
            if row.state == TaskStatus.QUEUED and row.not_before > wall:
                task.due = now + row.not_before - wall
            if row.state == TaskStatus.RUNNING:
                task.worker_id = row.worker
                task.tried = {row.worker}
                if row.spec.timeout:  # the backstop restarts with the manager
                    task.deadline = now + row.spec.timeout + book.deadline_grace
                self._waiting[row.spec.id] = (row.worker, row.attempt, row.worker_key)
            book.restore(task)
            counts[row.state] += 1
        if counts:
            self.deadline = now + patience
            logger.info(
                "journal {}: resumed {} queued and {} running (awaiting their workers)",
                store.path,
                counts[TaskStatus.QUEUED],
                counts[TaskStatus.RUNNING],
            )

    def claim(
        self, worker_id: str, holding: list[ResultKey], worker_key: str = ""
    ) -> list[tuple[str, int]]:
        """The orphans ``worker_id`` says it still holds: adopted back, no longer waiting.

        With CURVE only the key the task was assigned to gets it back.
        """
        adopted = []
        for key in holding:
            waiting = self._waiting.get(key.task_id)
            if waiting is not None and waiting[2] not in ("", worker_key):
                continue
            if waiting is not None and waiting[:2] == (worker_id, key.attempt):
                del self._waiting[key.task_id]
                adopted.append((key.task_id, key.attempt))
        return adopted

    def forget(self, task_id: str) -> None:
        self._waiting.pop(task_id, None)

    def expired(self, now: float) -> list[tuple[str, str]]:
        """``(task id, worker id)`` of every orphan once the deadline passed (then none wait)."""
        if not self._waiting or now <= self.deadline:
            return []
        out = [(task_id, worker) for task_id, (worker, _, _) in self._waiting.items()]
        self._waiting.clear()
        return out


def held(service: TaskService, rec: AgentRecord, old: AgentRecord | None, msg: Register) -> None:
    """A worker (re-)registered: the attempts it says it ``holding`` stay its own.

    Those its previous record held move over; orphans of a restart that it
    claims are adopted back; within the orphan wait, a queued task it holds at
    a higher attempt (assigned just before a crash, the assignment not yet
    committed) is adopted as running on it.
    """
    holding = {(k.task_id, k.attempt) for k in msg.holding}
    if old is not None:
        for task_id, attempt in list(old.running.items()):
            if (task_id, attempt) in holding:
                rec.running[task_id] = attempt
                del old.running[task_id]
    claimed = service.orphans.claim(rec.id, msg.holding, rec.key)
    for task_id, attempt in claimed:
        rec.running[task_id] = attempt
        logger.debug(
            "{} still holds task {} (attempt {})",
            rec.name,
            task_id,
            attempt,
            task=task_id,
            worker=rec.name,
        )
    if claimed:
        logger.info(
            "{} still holds {} task(s) from before the restart",
            rec.name,
            len(claimed),
            worker=rec.name,
        )
    if service.admin.clock() > service.orphans.deadline:
        return  # only a restarted manager can have forgotten an assignment
    adopted = 0
    for key in msg.holding:
        task = service.book.get(key.task_id)
        if task is not None and task.state == TaskStatus.QUEUED and key.attempt > task.attempt:
            service.book.adopt(task, rec.id, key.attempt)
            service.store.assigned([(task.seq, key.attempt, rec.id, rec.key)])
            rec.running[key.task_id] = key.attempt
            adopted += 1
            logger.debug(
                "{} holds task {} (attempt {})",
                rec.name,
                key.task_id,
                key.attempt,
                task=key.task_id,
                worker=rec.name,
            )
    if adopted:
        logger.info(
            "{} holds {} task(s) assigned just before the restart",
            rec.name,
            adopted,
            worker=rec.name,
        )


def release(
    service: TaskService, task_id: str, reason: str, given_up: list[tuple[int, Live, TaskResult]]
) -> None:
    """A running task lost its worker (or its worker did not come back after a restart):
    re-queued, its lost attempt kept in its history, or given up (``given_up`` gets it)."""
    task = service.book.get(task_id)
    if task is None or task.state != TaskStatus.RUNNING:
        return  # already finished (e.g. by the deadline): nothing to re-queue
    ran_by = service.ran_by(task)
    lost = manager_result(task, ResultStatus.WORKER_LOST, reason, time.time(), ran_by)
    result = service.book.release(task_id, lost.finished, reason, ran_by)
    who = ran_by[0] or lost.worker_id
    if result is not None:
        given_up.append((task.seq, task, result))
        logger.warning("task {} given up: {}", task_id, reason, task=task_id, worker=who)
    else:
        service.store.requeued(task.seq, lost)
        service.stats.recorded([(task.seq, task, lost)])
        service.stats.reruns["lost"] += 1
        logger.debug("task {} re-queued: {}", task_id, reason, task=task_id, worker=who)
