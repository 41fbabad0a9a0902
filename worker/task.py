"""What a task function sees: its context, and the exception for an expected failure.

A handler is ``fn(task: TaskSpec, ctx: TaskContext) -> output``.  Returning
is success; raising ``TaskFailed`` is an expected failure (status
``failed``, never retried); any other exception is an error whose type,
message and traceback travel back to the manager, and which the manager
retries while the task has ``retries`` left.  ``Retry`` says so explicitly,
for a transient failure: an error without a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol import TaskSpec


@dataclass(frozen=True, slots=True)
class TaskContext:
    worker: str
    worker_id: str
    skill: int
    attempt: int
    time_scale: float


HandlerFn = Callable[[TaskSpec, TaskContext], Any]


class TaskFailed(Exception):
    """Raised by a handler for an expected failure (status ``failed``, not ``error``)."""


class Retry(Exception):
    """Raised by a handler for a transient failure: run the task again later.

    The attempt ends as an ``error`` of type ``Retry`` with this message (no
    traceback); the manager runs the task again after its backoff while it
    has ``retries`` left (``TaskSpec.retries``), else that error is final.
    """
