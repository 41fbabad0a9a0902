"""What a task function sees: its context, and the exception for an expected failure.

A handler is ``fn(task: TaskSpec, ctx: TaskContext) -> output``.  Returning
is success; raising ``TaskFailed`` is an expected failure (status
``failed``); any other exception is an error whose type, message and
traceback travel back to the manager.
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
