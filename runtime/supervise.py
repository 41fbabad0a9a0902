"""Running an agent's loops together: one fails or the stop flag is set, all end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


async def supervise(stopping: asyncio.Event, *coros: Coroutine[Any, Any, None]) -> None:
    """Run ``coros`` until ``stopping`` is set or one of them fails; cancel the rest.

    A coroutine that returns normally just ends; an exception in one stops
    them all and is re-raised.
    """
    tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(c) for c in coros]
    waiter: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
    pending = set(tasks)
    try:
        while pending and not stopping.is_set():
            done, _ = await asyncio.wait(pending | {waiter}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {waiter}:
                pending.discard(task)
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:
        for task in [*tasks, waiter]:
            task.cancel()
        for task in [*tasks, waiter]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def cancelling() -> bool:
    """Whether the running task itself is being cancelled (not just an await it was in)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
