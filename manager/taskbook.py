"""The live tasks: queued or running on one worker.  Pure; no I/O.

A task that gets its final result leaves the book (the store keeps it).
Queued tasks wait in one FIFO queue per ``(kind, difficulty)``, so placement
looks only at queues some worker can take and never rescans work nobody can
run.  Counts are kept as tasks move, so reading them costs the same at any
size.

The book enforces the recording rules: a result counts only when it comes
from the worker the task is assigned to, for the current attempt; the first
such result is final and anything after it is a duplicate — unless it is an
``error`` and the task has ``retries`` left: then the task waits out its
backoff in a heap ordered by due time (not in a queue; ``ripe`` moves the
due ones to the front of their queues) and runs again as a new attempt.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass

from protocol import ErrorInfo, ResultStatus, TaskResult, TaskSpec, TaskState, TaskStatus

QueueKey = tuple[str, int]  # (kind, difficulty)


class Outcome(enum.Enum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"  # the task already has its final result
    STALE = "stale"  # not (or no longer) assigned to this sender and attempt
    UNKNOWN = "unknown"  # not a live task (the service tells duplicates from strangers)
    RETRY = "retry"  # recorded as an attempt; the task runs again after its backoff


#: Results the manager retries while the task has ``retries`` left.
RETRIED = frozenset({ResultStatus.ERROR})


@dataclass(slots=True, eq=False)
class Live:
    spec: TaskSpec
    seq: int
    state: TaskStatus = TaskStatus.QUEUED
    attempt: int = 0
    worker_id: str = ""
    deadline: float | None = None
    tried: set[str] | None = None  # workers that lost this task
    owner: str = ""  # the CURVE key of the client that submitted it ("" without CURVE)
    base: int = 0  # attempts of earlier runs (before an operator's retry)
    retried: int = 0  # attempts of this run that ended in an error and were retried
    due: float | None = None  # waiting out a retry backoff until then (clock time); in no queue

    def view(self) -> TaskState:
        return TaskState(
            id=self.spec.id,
            state=self.state,
            attempt=self.attempt,
            description=self.spec.description,
            difficulty=self.spec.difficulty,
            worker=self.worker_id,
        )


class TaskBook:
    def __init__(self, max_attempts: int = 3, deadline_grace: float = 3.0) -> None:
        self.max_attempts = max_attempts
        self.deadline_grace = deadline_grace
        self._live: dict[str, Live] = {}
        self._queues: dict[QueueKey, deque[Live]] = {}
        self._timed: dict[str, Live] = {}  # running tasks that have a deadline
        self._delayed: list[tuple[float, int, Live]] = []  # (due, tie-breaker, task): a heap
        self._ties = itertools.count()
        self.queued = 0
        self.delayed = 0  # tasks waiting out a retry backoff
        self.running = 0
        self.finished: Counter[str] = Counter()  # final results by status, since the start
        self.duplicates = 0
        self.stale = 0

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[Live]:
        """Live tasks in submission order (the order they entered the book)."""
        return iter(self._live.values())

    def get(self, task_id: str) -> Live | None:
        return self._live.get(task_id)

    # ------------------------------------------------------------------ entering

    def submit(self, spec: TaskSpec, seq: int, owner: str = "") -> Live:
        """Queue a new task (the caller made sure its id is not known)."""
        task = Live(spec=spec, seq=seq, owner=owner)
        self._live[spec.id] = task
        self._enqueue(task)
        return task

    def restore(self, task: Live) -> None:
        """Put back a task read from the store: queued (or waiting out a backoff until
        ``task.due``), or running on its worker."""
        self._live[task.spec.id] = task
        if task.state == TaskStatus.QUEUED and task.due is not None:
            self._delay(task, task.due)
        elif task.state == TaskStatus.QUEUED:
            self._enqueue(task)
        else:
            self.running += 1
            if task.deadline is not None:
                self._timed[task.spec.id] = task

    def _enqueue(self, task: Live, front: bool = False) -> None:
        key = (task.spec.kind, task.spec.difficulty)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        if front:
            queue.appendleft(task)
        else:
            queue.append(task)
        self.queued += 1

    # ------------------------------------------------------------------ placement

    def queues(self) -> dict[QueueKey, deque[Live]]:
        """The non-empty queues by ``(kind, difficulty)`` (placement pops from them)."""
        empty = [key for key, queue in self._queues.items() if not queue]
        for key in empty:
            del self._queues[key]
        return self._queues

    def start(self, task: Live, worker_id: str, now: float) -> int:
        """``task`` (already popped from its queue) now runs on ``worker_id``; its attempt."""
        self.queued -= 1
        self.running += 1
        task.state = TaskStatus.RUNNING
        task.attempt += 1
        task.worker_id = worker_id
        timeout = task.spec.timeout
        if timeout:
            task.deadline = now + timeout + self.deadline_grace
            self._timed[task.spec.id] = task
        return task.attempt

    def adopt(self, task: Live, worker_id: str, attempt: int) -> None:
        """A queued task a worker says it already runs (its assignment was not committed)."""
        self._unqueue(task)
        self.queued += 1  # ``start`` counts it out of the queue
        self.start(task, worker_id, 0.0)
        task.attempt = attempt
        task.deadline = None
        self._timed.pop(task.spec.id, None)

    # ------------------------------------------------------------------ leaving

    def record(
        self, result: TaskResult, sender: str, now: float = 0.0
    ) -> tuple[Outcome, Live | None]:
        """Record a worker's result; returns the outcome and, when recorded, the task.

        ``RETRY``: the result is an attempt that is retried, ``task.due`` (clock
        time, from ``now``) is when it runs again.
        """
        task = self._live.get(result.task_id)
        if task is None:
            return Outcome.UNKNOWN, None
        if (
            task.state != TaskStatus.RUNNING
            or task.worker_id != sender
            or task.attempt != result.attempt
        ):
            self.stale += 1
            return Outcome.STALE, None
        if result.status in RETRIED and task.retried < task.spec.retries:
            task.retried += 1
            self._stop(task)
            self._delay(task, now + task.spec.backoff(task.retried))
            return Outcome.RETRY, task
        self._finish(task, result)
        return Outcome.RECORDED, task

    def _finish(self, task: Live, result: TaskResult) -> None:
        del self._live[task.spec.id]
        self._timed.pop(task.spec.id, None)
        if task.state == TaskStatus.RUNNING:
            self.running -= 1
        else:
            self._unqueue(task)
        task.state = TaskStatus.DONE
        self.finished[result.status] += 1

    def _stop(self, task: Live) -> None:
        """A running task is queued again (the caller puts it in a queue or the heap)."""
        self.running -= 1
        task.state = TaskStatus.QUEUED
        task.worker_id = ""
        task.deadline = None
        self._timed.pop(task.spec.id, None)

    def _unqueue(self, task: Live) -> None:
        """Take a queued task out of its queue, or out of the backoff heap."""
        if task.due is not None:
            task.due = None  # its heap entry is now stale: skipped when it comes up
            self.delayed -= 1
            return
        queue = self._queues.get((task.spec.kind, task.spec.difficulty))
        if queue is not None:
            queue.remove(task)
        self.queued -= 1

    def _delay(self, task: Live, due: float) -> None:
        task.due = due
        heapq.heappush(self._delayed, (due, next(self._ties), task))
        self.delayed += 1

    def ripe(self, now: float) -> int:
        """Queue (at the front) the tasks whose backoff is over; returns how many."""
        heap, count = self._delayed, 0
        while heap and heap[0][0] <= now:
            due, _, task = heapq.heappop(heap)
            if task.due != due or task.state != TaskStatus.QUEUED:
                continue  # cancelled meanwhile (or delayed again)
            task.due = None
            self.delayed -= 1
            self._enqueue(task, front=True)
            count += 1
        return count

    def reopen(self, spec: TaskSpec, seq: int, owner: str, attempt: int) -> Live:
        """A finished task runs again (an operator's retry): queued, after ``attempt``."""
        task = Live(spec=spec, seq=seq, owner=owner, attempt=attempt, base=attempt)
        self._live[spec.id] = task
        self._enqueue(task)
        return task

    def give_up(
        self,
        task: Live,
        status: ResultStatus,
        message: str,
        finished: float,
        ran_by: tuple[str, int] = ("", 0),
    ) -> TaskResult:
        """Record a final result on the manager's authority (worker lost, deadline, cancel).

        ``finished`` is a unix time, like the times workers report; ``ran_by`` the name
        and skill of the worker the attempt was assigned to (``("", 0)``: none).
        """
        result = manager_result(task, status, message, finished, ran_by)
        self._finish(task, result)
        return result

    def release(
        self, task_id: str, finished: float, reason: str, ran_by: tuple[str, int] = ("", 0)
    ) -> TaskResult | None:
        """The task's worker is gone: requeue it, or give up after too many attempts.

        Returns the final result when the task was given up.
        """
        task = self._live.get(task_id)
        if task is None or task.state != TaskStatus.RUNNING:
            return None
        limit = task.spec.max_attempts or self.max_attempts
        lost = task.attempt - task.base - task.retried  # attempts of this run that lost a worker
        if lost >= limit:
            message = f"{reason} on all {lost} attempts"
            return self.give_up(task, ResultStatus.WORKER_LOST, message, finished, ran_by)
        if task.tried is None:
            task.tried = set()
        task.tried.add(task.worker_id)
        self._stop(task)
        self._enqueue(task, front=True)
        return None

    def overdue(self, now: float) -> list[Live]:
        """Running tasks past their deadline (only tasks with a timeout have one)."""
        return [t for t in self._timed.values() if t.deadline is not None and t.deadline < now]

    def counts(self) -> dict[str, int]:
        return {
            TaskStatus.QUEUED: self.queued,
            TaskStatus.RUNNING: self.running,
            "retrying": self.delayed,
            "duplicates": self.duplicates,
            "stale": self.stale,
        }


def manager_result(
    task: Live,
    status: ResultStatus,
    message: str,
    finished: float,
    ran_by: tuple[str, int] = ("", 0),
) -> TaskResult:
    """A result the manager writes for ``task``'s current attempt (worker lost, deadline,
    cancelled); ``finished`` is a unix time, ``ran_by`` the worker's name and skill."""
    worker, skill = ran_by
    return TaskResult(
        task_id=task.spec.id,
        attempt=task.attempt,
        worker=worker,
        skill=skill,
        worker_id=task.worker_id,
        success=False,
        status=status,
        error=ErrorInfo(type=status, message=message),
        finished=finished,
    )
