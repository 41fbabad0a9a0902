"""How a layer attaches to a worker's agent layer: the ``WorkerHooks`` extension points.

An extension is passed to ``Worker.use``; the task runner
(``worker.runner.TaskRunner``) is one.  Message handlers are plain functions
that change state and send without waiting (``Worker.send_nowait``).

- ``message_handlers()``: message types from the manager this extension handles.
- ``capacity`` / ``kinds``: what the worker advertises when it registers.
- ``holding()``: attempts it runs or holds results of, sent in ``register``.
- ``running()``: tasks in progress, sent in heartbeats.
- ``on_ready()``: connected to a manager instance (after every ``ready``).
- ``loops()``: coroutines that run as long as the worker does.
- ``drain()``: the first stop request: finish the work in hand, then return.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from protocol import Message, ResultKey

Handler = Callable[[Any], None]


class WorkerHooks:
    """No-op extension points; override the ones a layer needs."""

    capacity: int = 0
    kinds: tuple[str, ...] = ()

    def message_handlers(self) -> Mapping[type[Message], Handler]:
        return {}

    def holding(self) -> list[ResultKey]:
        return []

    def running(self) -> int:
        return 0

    def on_ready(self) -> None:
        pass

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        return []

    async def drain(self) -> None:
        pass
