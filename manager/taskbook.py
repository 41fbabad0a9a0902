"""Where every task stands: queued, running on one worker, or done.  Pure; no I/O.

The book enforces the recording rules: a result counts only when it comes
from the worker the task is assigned to, for the current attempt; the first
such result is final and anything after it is a duplicate.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from protocol import ErrorInfo, Job, ResultStatus, TaskResult, TaskSpec, TaskState, TaskStatus


class Outcome(enum.Enum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"  # the task already has its final result
    STALE = "stale"  # not (or no longer) assigned to this sender and attempt
    UNKNOWN = "unknown"  # no such task


@dataclass(slots=True)
class TaskRecord:
    spec: TaskSpec
    state: TaskStatus = TaskStatus.QUEUED
    attempt: int = 0
    worker_id: str = ""
    deadline: float | None = None
    tried: set[str] = field(default_factory=set)
    result: TaskResult | None = None

    def view(self, with_result: bool = True) -> TaskState:
        return TaskState(
            id=self.spec.id,
            state=self.state,
            attempt=self.attempt,
            description=self.spec.description,
            difficulty=self.spec.difficulty,
            worker=self.worker_id,
            result=self.result if with_result else None,
        )


class TaskBook:
    def __init__(self, max_attempts: int = 3, deadline_grace: float = 3.0) -> None:
        self.max_attempts = max_attempts
        self.deadline_grace = deadline_grace
        self._tasks: dict[str, TaskRecord] = {}
        self._queue: deque[str] = deque()
        self._timed: set[str] = set()  # running tasks that have a deadline
        self.duplicates = 0
        self.stale = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def get(self, task_id: str) -> TaskRecord | None:
        return self._tasks.get(task_id)

    def records(self) -> Iterator[TaskRecord]:
        return iter(self._tasks.values())

    def submit(self, spec: TaskSpec) -> bool:
        """Queue a new task; ``False`` (and no change) when the id is already known."""
        if spec.id in self._tasks:
            return False
        self._tasks[spec.id] = TaskRecord(spec=spec)
        self._queue.append(spec.id)
        return True

    def restore(self, rec: TaskRecord) -> None:
        """Put back a task read from the journal (queued if it was not done)."""
        self._tasks[rec.spec.id] = rec
        if rec.state == TaskStatus.QUEUED:
            self._queue.append(rec.spec.id)
        elif rec.state == TaskStatus.RUNNING and rec.deadline is not None:
            self._timed.add(rec.spec.id)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def queue(self) -> Iterable[str]:
        return tuple(self._queue)

    def schedule(
        self,
        pick: Callable[[TaskSpec, set[str]], str | None],
        room: Callable[[], bool],
        now: float,
    ) -> list[tuple[str, Job]]:
        """One pass over the queue in order: place what ``pick`` finds a worker for.

        ``pick(spec, tried)`` returns a worker id or ``None`` (the task stays
        queued in its place); the pass ends early once ``room()`` is false.
        """
        placed: list[tuple[str, Job]] = []
        held: deque[str] = deque()
        try:
            while self._queue and room():
                task_id = self._queue[0]
                rec = self._tasks[task_id]
                worker_id = pick(rec.spec, rec.tried)  # may raise: the task stays queued
                self._queue.popleft()
                if worker_id is None:
                    held.append(task_id)
                    continue
                placed.append((worker_id, self._start(rec, worker_id, now)))
        finally:
            held.extend(self._queue)
            self._queue = held
        return placed

    def _start(self, rec: TaskRecord, worker_id: str, now: float) -> Job:
        rec.state = TaskStatus.RUNNING
        rec.attempt += 1
        rec.worker_id = worker_id
        rec.tried.add(worker_id)
        timeout = rec.spec.timeout
        rec.deadline = now + timeout + self.deadline_grace if timeout else None
        if rec.deadline is not None:
            self._timed.add(rec.spec.id)
        return Job(task=rec.spec, attempt=rec.attempt)

    def record(self, result: TaskResult, sender: str) -> Outcome:
        rec = self._tasks.get(result.task_id)
        if rec is None:
            return Outcome.UNKNOWN
        if rec.state == TaskStatus.DONE:
            self.duplicates += 1
            return Outcome.DUPLICATE
        if (
            rec.state != TaskStatus.RUNNING
            or rec.worker_id != sender
            or rec.attempt != result.attempt
        ):
            self.stale += 1
            return Outcome.STALE
        self._finish(rec, result)
        return Outcome.RECORDED

    def _finish(self, rec: TaskRecord, result: TaskResult) -> None:
        rec.state = TaskStatus.DONE
        rec.result = result
        rec.deadline = None
        self._timed.discard(rec.spec.id)

    def give_up(
        self, rec: TaskRecord, status: ResultStatus, message: str, finished: float
    ) -> TaskResult:
        """Record a final result on the manager's authority (worker lost, deadline).

        ``finished`` is a unix time, like the times workers report.
        """
        result = TaskResult(
            task_id=rec.spec.id,
            attempt=rec.attempt,
            worker="",
            worker_id=rec.worker_id,
            success=False,
            status=status,
            error=ErrorInfo(type=status, message=message),
            finished=finished,
        )
        if rec.state == TaskStatus.QUEUED:
            self._queue.remove(rec.spec.id)
        self._finish(rec, result)
        return result

    def release(self, task_id: str, finished: float, reason: str) -> TaskResult | None:
        """The task's worker is gone: requeue it, or give up after too many attempts.

        Returns the final result when the task was given up.
        """
        rec = self._tasks[task_id]
        if rec.state != TaskStatus.RUNNING:
            return None
        limit = rec.spec.max_attempts or self.max_attempts
        if rec.attempt >= limit:
            message = f"{reason} on all {rec.attempt} attempts"
            return self.give_up(rec, ResultStatus.WORKER_LOST, message, finished)
        rec.state = TaskStatus.QUEUED
        rec.worker_id = ""
        rec.deadline = None
        self._timed.discard(task_id)
        self._queue.appendleft(task_id)
        return None

    def overdue(self, now: float) -> list[TaskRecord]:
        """Running tasks past their deadline (only tasks with a timeout have one)."""
        recs = (self._tasks[task_id] for task_id in self._timed)
        return [r for r in recs if r.deadline is not None and r.deadline < now]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {
            TaskStatus.QUEUED: 0,
            TaskStatus.RUNNING: 0,
            TaskStatus.DONE: 0,
            "succeeded": 0,
            "failed": 0,
        }
        for rec in self._tasks.values():
            out[rec.state] += 1
            if rec.result is not None:
                out["succeeded" if rec.result.success else "failed"] += 1
        out["duplicates"] = self.duplicates
        out["stale"] = self.stale
        return out
