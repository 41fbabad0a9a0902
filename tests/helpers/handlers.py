"""Fake task functions for the reliability tests (``--handlers tests.helpers.handlers``)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from protocol import TaskSpec
from worker.task import Retry, TaskContext


async def sleep(task: TaskSpec, ctx: TaskContext) -> Any:
    """Sleeps ``payload`` seconds, returns the payload."""
    await asyncio.sleep(float(task.payload or 0))
    return task.payload


def crash(task: TaskSpec, ctx: TaskContext) -> None:
    """Kills the worker process running it: the poison task."""
    os.kill(os.getpid(), signal.SIGKILL)


def spin(task: TaskSpec, ctx: TaskContext) -> int:
    """Pure-Python CPU work for ``payload`` seconds; returns the loop count."""
    end = time.monotonic() + float(task.payload or 0)
    count = 0
    while time.monotonic() < end:
        count += sum(range(1000)) > 0
    return count


async def hang(task: TaskSpec, ctx: TaskContext) -> None:
    await asyncio.sleep(3600)


def hang_sync(task: TaskSpec, ctx: TaskContext) -> None:
    time.sleep(3600)


def nap(task: TaskSpec, ctx: TaskContext) -> Any:
    """Blocks its thread for ``payload`` seconds (a plain function: runs in a thread)."""
    time.sleep(float(task.payload or 0))
    return task.payload


def fail(task: TaskSpec, ctx: TaskContext) -> None:
    raise ValueError(f"task {task.id} always fails")


def whoami(task: TaskSpec, ctx: TaskContext) -> dict[str, Any]:
    return {"pid": os.getpid(), "worker": ctx.worker}


def big(task: TaskSpec, ctx: TaskContext) -> bytes:
    """Returns ``payload`` bytes: over the output limit when large."""
    return b"x" * int(task.payload or 0)


def busy(task: TaskSpec, ctx: TaskContext) -> None:
    """Always asks to be retried later."""
    raise Retry(f"busy on attempt {ctx.attempt}")


def flaky(task: TaskSpec, ctx: TaskContext) -> str:
    """Fails (an error) on its first attempt, succeeds on any later one."""
    if ctx.attempt == 1:
        raise RuntimeError("first attempts fail")
    return f"ok on attempt {ctx.attempt}"


def until_file(task: TaskSpec, ctx: TaskContext) -> str:
    """Waits (at most 10 s) for the file ``payload`` names to appear: 'seen' or 'never'."""
    path = Path(str(task.payload))
    for _ in range(1000):
        if path.exists():
            return "seen"
        time.sleep(0.01)
    return "never"


def pid_then_hang(task: TaskSpec, ctx: TaskContext) -> None:
    """Writes its process id to the file ``payload`` names, then runs for an hour."""
    Path(str(task.payload)).write_text(str(os.getpid()))
    time.sleep(3600)


HANDLERS = {
    "big": big,
    "sleep": sleep,
    "crash": crash,
    "spin": spin,
    "spin_proc": spin,
    "hang": hang,
    "hang_proc": hang_sync,
    "fail": fail,
    "nap": nap,
    "whoami_proc": whoami,
    "busy": busy,
    "busy_proc": busy,
    "flaky": flaky,
    "pid_hang_proc": pid_then_hang,
}

PROCESS_KINDS = ("spin_proc", "hang_proc", "whoami_proc", "busy_proc", "pid_hang_proc")
