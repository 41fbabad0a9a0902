"""Warm processes for process kinds (``--process-pool N``).

Starting an interpreter costs 0.3-0.5 s, more than many CPU-bound tasks
take.  A pool keeps ``size`` child processes that each run one task at a time
and stay up between tasks.  A task that is cancelled, times out or kills its
process takes its child with it: the child is killed and a fresh one starts
in its place, so a task can never leave a pool process in a bad state for
the next one.  Only a function reference and msgpack bytes cross the pipe,
as with one process per task (``worker.isolation``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from multiprocessing.connection import Connection
from typing import Any

from protocol import TaskSpec
from protocol.codec import pack, plain, unpack
from worker.isolation import _SPAWN, TaskError, outcome, reference, run_one
from worker.task import HandlerFn, TaskContext


def _serve(conn: Connection) -> None:
    """A pool child: run the tasks it is sent, one at a time, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the worker's to handle
    while True:
        try:
            ref, task, ctx = unpack(conn.recv_bytes())
        except EOFError:
            return
        conn.send_bytes(run_one(ref, task, ctx))


class _Child:
    def __init__(self) -> None:
        self.conn, child_end = _SPAWN.Pipe(duplex=True)
        self.proc = _SPAWN.Process(target=_serve, args=(child_end,), daemon=True, name="pool")
        self.proc.start()
        child_end.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    async def call(self, request: bytes) -> bytes:
        """Send one request; the reply, read off the event loop once it is there."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self.conn.send_bytes(request)
        fd = self.conn.fileno()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            return await asyncio.to_thread(self.conn.recv_bytes)
        except EOFError:
            exitcode = self.proc.exitcode
            raise TaskError("ProcessDied", f"pool process exited with {exitcode}") from None

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class ProcessPool:
    """``size`` warm processes; ``run`` borrows one for a task."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a process pool needs at least one process")
        self.size = size
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._all: set[_Child] = set()
        self.replaced = 0

    def start(self) -> None:
        for _ in range(self.size - len(self._all)):
            self._add()

    def _add(self) -> None:
        child = _Child()
        self._all.add(child)
        self._idle.put_nowait(child)

    def pids(self) -> set[int]:
        return {c.pid for c in self._all if c.pid is not None}

    async def run(self, fn: HandlerFn, task: TaskSpec, ctx: TaskContext) -> Any:
        """Run ``fn(task, ctx)`` in a pool process; cancelling this call kills that process."""
        request = pack([reference(fn), pack(plain(task)), pack(dataclasses.asdict(ctx))])
        if not self._all:
            self.start()
        child = await self._idle.get()
        try:
            data = await child.call(request)
        except BaseException:  # cancelled, timed out, or the process died: never reuse it
            self._replace(child)
            raise
        self._idle.put_nowait(child)
        return outcome(data)

    def _replace(self, child: _Child) -> None:
        self._all.discard(child)
        child.kill()
        self.replaced += 1
        self._add()

    def close(self) -> None:
        for child in list(self._all):
            with contextlib.suppress(Exception):
                child.kill()
        self._all.clear()
