"""Task functions by kind: the built-in kinds plus what ``--handlers`` modules add.

Async handlers run on the worker's event loop; plain functions run in a
thread so they never starve the heartbeats; kinds marked ``process`` run each
task in a process of their own (``worker.isolation``).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

from protocol import TaskSpec
from worker.isolation import reference, run_in_process
from worker.kinds import BUILTIN
from worker.pool import ProcessPool
from worker.task import HandlerFn, TaskContext


class HandlerError(ValueError):
    """A handler module or kind that cannot be used, with the reason."""


class Handlers:
    """The kinds a worker can run, advertised when it registers."""

    def __init__(self, builtins: bool = True) -> None:
        self._fns: dict[str, HandlerFn] = {}
        self._async: dict[str, bool] = {}  # kind -> a coroutine function (looked up once)
        self.process_kinds: set[str] = set()
        #: Warm processes for the process kinds (``None``: a fresh process per task).
        self.pool: ProcessPool | None = None
        if builtins:
            for kind, fn in BUILTIN.items():
                self.register(kind, fn)

    def register(self, kind: str, fn: HandlerFn, *, process: bool = False) -> None:
        if not kind:
            raise HandlerError("a handler kind must not be empty")
        self._fns[kind] = fn
        self._async[kind] = inspect.iscoroutinefunction(fn)
        if process:
            self.isolate(kind)

    def isolate(self, kind: str) -> None:
        """Run ``kind`` in a process per task from now on.

        Refused at once (not at the first task) for an unknown kind, an async
        function, or a function a child process cannot import by name.
        """
        fn = self._fns.get(kind)
        if fn is None:
            raise HandlerError(f"no handler for kind {kind!r} to run in a process")
        if inspect.iscoroutinefunction(fn):
            raise HandlerError(f"{kind!r} is async; only plain functions run in a process")
        try:
            reference(fn)
        except ValueError as exc:
            raise HandlerError(f"{kind!r}: {exc}") from None
        self.process_kinds.add(kind)

    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._fns))

    def get(self, kind: str) -> HandlerFn | None:
        return self._fns.get(kind)

    def load(self, spec: str) -> None:
        """Import ``module`` (or ``module:attr``) and register its ``HANDLERS`` mapping."""
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise HandlerError(f"cannot import {module_name!r}: {exc}") from None
        except Exception as exc:  # the module's own code failed: its error, not a traceback
            raise HandlerError(
                f"importing {module_name!r} raised {type(exc).__name__}: {exc}"
            ) from None
        table = getattr(module, attr or "HANDLERS", None)
        if not isinstance(table, dict):
            raise HandlerError(
                f"{spec}: expected a dict of kind -> function named {attr or 'HANDLERS'}"
            )
        for kind, fn in table.items():
            if not callable(fn):
                raise HandlerError(f"{spec}: handler for {kind!r} is not callable")
            self.register(str(kind), fn)
        for kind in getattr(module, "PROCESS_KINDS", ()):
            self.isolate(str(kind))

    def in_thread(self, kind: str) -> bool:
        """Whether ``kind`` runs in a thread (plain function, not process-isolated)."""
        return kind in self._fns and kind not in self.process_kinds and not self._async[kind]

    async def call(self, kind: str, task: TaskSpec, ctx: TaskContext) -> Any:
        """Run the handler of ``kind``: on the loop, in a thread, or in its own process."""
        fn = self._fns[kind]
        if self._async[kind]:
            return await fn(task, ctx)
        if kind in self.process_kinds:
            if self.pool is not None:
                return await self.pool.run(fn, task, ctx)
            return await run_in_process(fn, task, ctx)
        return await asyncio.to_thread(fn, task, ctx)


def load_handlers(
    specs: tuple[str, ...], process_kinds: tuple[str, ...], app_dir: str, pool: int = 0
) -> Handlers:
    """The built-ins plus ``specs``, imported with ``app_dir`` appended to ``sys.path``.

    Appended, not prepended, so a module there cannot shadow taskmesh itself.
    With ``pool`` > 0 the process kinds run in that many warm processes.
    """
    path = str(Path(app_dir).resolve())
    if path not in sys.path:
        sys.path.append(path)
    handlers = Handlers()
    for spec in specs:
        handlers.load(spec)
    for kind in process_kinds:
        handlers.isolate(kind)
    if pool and handlers.process_kinds:
        handlers.pool = ProcessPool(pool)
    return handlers
