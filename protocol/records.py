"""The records messages carry: tasks, jobs, results, agents, states.

Each is a frozen dataclass that travels as a plain msgpack map of its
fields, nested inside a message (``protocol.messages``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from protocol.constants import MAX_BACKOFF, MAX_NAME, MAX_RETRIES, MAX_TASK_ID
from protocol.states import RESULT_STATUSES, ResultStatus

_SUCCEEDED = str(ResultStatus.SUCCEEDED)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    """A unit of work as a client submits it."""

    id: str
    description: str = ""
    difficulty: int = 1
    kind: str = "simulate"
    payload: Any = None
    timeout: float | None = None
    max_attempts: int | None = None
    retries: int = 0
    retry_backoff: float = 1.0

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("task id must not be empty")
        if len(self.id) > MAX_TASK_ID:
            raise ValueError(f"task id is longer than {MAX_TASK_ID} characters")
        if not 1 <= self.difficulty <= 10:
            raise ValueError(f"difficulty must be 1..10, got {self.difficulty}")
        if not self.kind:
            raise ValueError("task kind must not be empty")
        if len(self.kind) > MAX_NAME:  # as a worker's kinds: a longer one could never run
            raise ValueError(f"task kind is longer than {MAX_NAME} characters")
        if self.timeout is not None and not 0 < self.timeout < math.inf:
            raise ValueError("timeout must be a positive number of seconds")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.retries <= MAX_RETRIES:
            raise ValueError(f"retries must be 0..{MAX_RETRIES}, got {self.retries}")
        if not 0 <= self.retry_backoff <= MAX_BACKOFF:
            raise ValueError(f"retry_backoff must be 0..{MAX_BACKOFF:g} seconds")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before automatic retry number ``retry`` (1, 2, ...): the
        backoff doubles each time, up to ``MAX_BACKOFF``."""
        return min(self.retry_backoff * 2.0 ** min(retry - 1, 64), MAX_BACKOFF)


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One attempt at a task, as assigned to a worker."""

    task: TaskSpec
    attempt: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """A failure travelling as data: exception type, message, bounded traceback."""

    type: str
    message: str
    traceback: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskResult:
    """The outcome of one attempt.  ``status`` is one of ``RESULT_STATUSES``."""

    task_id: str
    attempt: int
    worker: str
    worker_id: str
    success: bool
    status: str
    output: Any = None
    error: ErrorInfo | None = None
    started: float = 0.0
    finished: float = 0.0
    skill: int = 0

    def __post_init__(self) -> None:
        if self.status not in RESULT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(sorted(RESULT_STATUSES))}")
        if self.success != (self.status == _SUCCEEDED):
            raise ValueError("success must be true exactly when status is 'succeeded'")
        if self.attempt < 0:
            raise ValueError("attempt must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultKey:
    task_id: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRef:
    """An agent as others see it: Ceylon's ``AgentDetail`` on the wire."""

    id: str
    name: str
    role: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo:
    """A worker as ``Status`` reports it."""

    id: str
    name: str
    role: str
    skill: int
    capacity: int
    kinds: list[str]
    running: int
    completed: int
    state: str
    silent_for: float  # seconds since the manager last heard from it
    host: str = ""  # as the worker reported it when it registered
    pid: int = 0
    tasks: list[str] = field(default_factory=list)  # ids of running tasks (a bounded prefix)
    failed: int = 0  # of ``completed``: results without success
    total_completed: int = 0  # results recorded from this agent id, ever (from the journal)
    total_failed: int = 0
    connected_for: float = 0.0  # seconds since it registered


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskState:
    """Where a task stands, as the manager reports it to clients."""

    id: str
    state: str
    attempt: int
    description: str = ""
    difficulty: int = 0
    worker: str = ""
    result: TaskResult | None = None
    waiting: str = ""  # queued, and no connected worker can run it: why


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """A task id an operator action (``cancel``, ``retry``) did not act on, and why."""

    id: str
    code: str  # ``unknown`` or ``bad_state``
    message: str
