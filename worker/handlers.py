"""Task functions by kind.  ``simulate`` (the seed scenario) is built in.

A handler is ``fn(task: TaskSpec, ctx: TaskContext) -> output``.  Async
handlers run on the worker's event loop; plain functions run in a thread so
they never starve the heartbeats.  Returning is success; raising
``TaskFailed`` is an expected failure; any other exception is an error whose
type, message and traceback travel back to the manager.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
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


async def simulate(task: TaskSpec, ctx: TaskContext) -> dict[str, Any]:
    """The seed's task: takes ``difficulty * time_scale`` s, succeeds iff skill >= difficulty."""
    await asyncio.sleep(task.difficulty * ctx.time_scale)
    if ctx.skill < task.difficulty:
        raise TaskFailed(f"skill {ctx.skill} is below difficulty {task.difficulty}")
    return {"skill": ctx.skill, "difficulty": task.difficulty}


async def echo(task: TaskSpec, ctx: TaskContext) -> Any:
    """Returns the payload unchanged (a no-op task for wiring checks and benchmarks)."""
    return task.payload


class Handlers:
    """The kinds a worker can run, advertised when it registers.

    Kinds registered with ``process=True`` run each task in a process of its
    own (CPU-bound work; killable on timeout); the others run on the loop
    (async functions) or in a thread (plain functions).
    """

    def __init__(self, builtins: bool = True) -> None:
        self._fns: dict[str, HandlerFn] = {}
        self.process_kinds: set[str] = set()
        if builtins:
            self.register("simulate", simulate)
            self.register("echo", echo)

    def register(self, kind: str, fn: HandlerFn, *, process: bool = False) -> None:
        if not kind:
            raise ValueError("a handler kind must not be empty")
        self._fns[kind] = fn
        if process:
            self.isolate(kind)

    def isolate(self, kind: str) -> None:
        """Run ``kind`` in a process per task from now on."""
        fn = self._fns.get(kind)
        if fn is None:
            raise ValueError(f"no handler for kind {kind!r} to run in a process")
        if inspect.iscoroutinefunction(fn):
            raise ValueError(f"{kind!r} is async; only plain functions run in a process")
        self.process_kinds.add(kind)

    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._fns))

    def get(self, kind: str) -> HandlerFn | None:
        return self._fns.get(kind)

    def load(self, spec: str) -> None:
        """Import ``module`` (or ``module:attr``) and register its ``HANDLERS`` mapping."""
        module_name, _, attr = spec.partition(":")
        module = importlib.import_module(module_name)
        table = getattr(module, attr or "HANDLERS", None)
        if not isinstance(table, dict):
            raise ValueError(
                f"{spec}: expected a dict of kind -> function named {attr or 'HANDLERS'}"
            )
        for kind, fn in table.items():
            if not callable(fn):
                raise ValueError(f"{spec}: handler for {kind!r} is not callable")
            self.register(str(kind), fn)
        for kind in getattr(module, "PROCESS_KINDS", ()):
            self.isolate(str(kind))

    def in_thread(self, kind: str) -> bool:
        """Whether ``kind`` runs in a thread (plain function, not process-isolated)."""
        fn = self._fns.get(kind)
        return (
            fn is not None
            and kind not in self.process_kinds
            and not inspect.iscoroutinefunction(fn)
        )

    async def call(self, kind: str, task: TaskSpec, ctx: TaskContext) -> Any:
        """Run the handler of ``kind``: on the loop, in a thread, or in its own process."""
        fn = self._fns[kind]
        if kind in self.process_kinds:
            from worker.isolation import run_in_process

            return await run_in_process(fn, task, ctx)
        if inspect.iscoroutinefunction(fn):
            return await fn(task, ctx)
        return await asyncio.to_thread(fn, task, ctx)
