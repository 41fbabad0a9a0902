"""A restarted manager's journal: tasks it resumes, and running tasks waiting for their worker.

Queued tasks are queued again.  A task the journal shows running stays with
its worker (an *orphan*) until that worker re-registers and says, in
``holding``, that it still has the attempt; orphans not claimed within the
deadline are released like the tasks of a lost worker.
"""

from __future__ import annotations

from collections import Counter

from loguru import logger

from manager.registry import AgentRecord
from manager.store import Store
from manager.taskbook import Live, TaskBook
from protocol import ResultKey, TaskStatus


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
        for row in store.unfinished():
            task = Live(
                spec=row.spec, seq=row.seq, state=row.state, attempt=row.attempt, owner=row.owner
            )
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

    def rejoin(
        self, rec: AgentRecord, holding: list[ResultKey], book: TaskBook, store: Store, now: float
    ) -> None:
        """``rec`` registered saying it holds ``holding``: give it back what it still runs.

        Its orphans (from the journal), and, shortly after a restart, queued
        tasks whose assignment to it was sent but not yet committed.
        """
        claimed = self.claim(rec.id, holding, rec.key)
        for task_id, attempt in claimed:
            rec.running[task_id] = attempt
            logger.debug("{} still holds task {} (attempt {})", rec.name, task_id, attempt)
        if claimed:
            logger.info("{} still holds {} task(s) from before the restart", rec.name, len(claimed))
        if now > self.deadline:
            return  # only a restarted manager can have forgotten an assignment
        adopted = 0
        for key in holding:  # assigned just before a crash, the assignment not committed
            task = book.get(key.task_id)
            if task is not None and task.state == TaskStatus.QUEUED and key.attempt > task.attempt:
                book.adopt(task, rec.id, key.attempt)
                store.assigned([(task.seq, key.attempt, rec.id, rec.key)])
                rec.running[key.task_id] = key.attempt
                adopted += 1
                logger.debug("{} holds task {} (attempt {})", rec.name, key.task_id, key.attempt)
        if adopted:
            logger.info("{} holds {} task(s) assigned just before the restart", rec.name, adopted)

    def forget(self, task_id: str) -> None:
        self._waiting.pop(task_id, None)

    def expired(self, now: float) -> list[tuple[str, str]]:
        """``(task id, worker id)`` of every orphan once the deadline passed (then none wait)."""
        if not self._waiting or now <= self.deadline:
            return []
        out = [(task_id, worker) for task_id, (worker, _, _) in self._waiting.items()]
        self._waiting.clear()
        return out
