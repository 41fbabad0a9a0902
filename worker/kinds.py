"""The task kinds every worker runs: part of the protocol (PROTOCOL.md, built-in kinds).

A foreign worker must produce the same outputs and failures for these.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from protocol import TaskSpec
from worker.task import TaskContext, TaskFailed


async def simulate(task: TaskSpec, ctx: TaskContext) -> dict[str, Any]:
    """The seed's task: takes ``difficulty * time_scale`` s, succeeds iff skill >= difficulty."""
    await asyncio.sleep(task.difficulty * ctx.time_scale)
    if ctx.skill < task.difficulty:
        raise TaskFailed(f"skill {ctx.skill} is below difficulty {task.difficulty}")
    return {"skill": ctx.skill, "difficulty": task.difficulty}


async def echo(task: TaskSpec, ctx: TaskContext) -> Any:
    """Returns the payload unchanged (a no-op task that carries data, for wiring checks)."""
    return task.payload


async def noop(task: TaskSpec, ctx: TaskContext) -> None:
    """Does nothing and returns nil: the cheapest task, for benchmarks."""


async def sleep(task: TaskSpec, ctx: TaskContext) -> Any:
    """Sleeps ``payload`` seconds (a number; nil is 0) and returns the payload."""
    seconds = task.payload if task.payload is not None else 0
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TaskFailed("payload must be a number of seconds")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise TaskFailed("payload must be a finite number of seconds >= 0")
    await asyncio.sleep(seconds)
    return task.payload


BUILTIN = {"simulate": simulate, "echo": echo, "noop": noop, "sleep": sleep}
