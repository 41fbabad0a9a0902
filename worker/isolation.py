"""Running a task function in a process of its own, so it can be killed.

For CPU-bound kinds: the worker's event loop (and its heartbeats) never
competes with the task for the GIL, and a timeout or a stop kills the task
outright.  Only a function reference and msgpack bytes cross the pipe to the
child; the child sends back msgpack.  The function must be importable by its
module and qualified name.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import multiprocessing
import traceback
from multiprocessing.connection import Connection
from typing import Any

from protocol import TRACEBACK_LIMIT, ProtocolError, TaskSpec, build
from protocol.codec import pack, plain, unpack
from worker.task import HandlerFn, Retry, TaskContext, TaskFailed

_SPAWN = multiprocessing.get_context("spawn")


class TaskError(Exception):
    """A task function failed in its process; carries the child's exception details."""

    def __init__(self, type_name: str, message: str, tb: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.traceback = tb


def reference(fn: HandlerFn) -> str:
    ref = f"{fn.__module__}:{fn.__qualname__}"
    if "<" in ref:
        raise ValueError(f"{ref}: a process-isolated handler must be a module-level function")
    return ref


def _resolve(ref: str) -> Any:
    module, _, name = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def run_one(ref: str, task: bytes, ctx: bytes) -> bytes:
    """In a child process: run the task, and say how it went as msgpack bytes."""
    try:
        fn = _resolve(ref)
        spec = build(TaskSpec, unpack(task))
        out = fn(spec, TaskContext(**unpack(ctx)))
        return pack({"ok": True, "output": out})
    except (TaskFailed, Retry) as exc:
        return pack({"ok": False, "type": type(exc).__name__, "message": str(exc)})
    except BaseException as exc:
        text = "".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:]
        return pack({"ok": False, "type": type(exc).__name__, "message": str(exc), "tb": text})


def _child(ref: str, task: bytes, ctx: bytes, conn: Connection) -> None:
    try:
        conn.send_bytes(run_one(ref, task, ctx))
    finally:
        conn.close()


async def run_in_process(fn: HandlerFn, task: TaskSpec, ctx: TaskContext) -> Any:
    """Run ``fn(task, ctx)`` in a fresh process; cancelling this call kills the process.

    The loop waits for the pipe to become readable; the reply itself is read
    in a thread (a large output arrives in pieces), never on the event loop.
    A cancelled call kills the child, which ends any read at end-of-file
    before the pipe is closed.
    """
    ref = reference(fn)
    reader, writer = _SPAWN.Pipe(duplex=False)
    proc = _SPAWN.Process(
        target=_child,
        args=(ref, pack(plain(task)), pack(dataclasses.asdict(ctx)), writer),
        daemon=True,
        name=f"task-{task.id}",
    )
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    proc.start()
    writer.close()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(reader.fileno(), readable)
    reading: asyncio.Future[bytes | None] | None = None
    try:
        await ready
        loop.remove_reader(reader.fileno())
        reading = asyncio.ensure_future(asyncio.to_thread(_read, reader))
        data = await asyncio.shield(reading)
    finally:
        loop.remove_reader(reader.fileno())
        if proc.is_alive():
            proc.kill()
        await asyncio.to_thread(proc.join, 5)
        if reading is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(reading), 5)
        reader.close()
    if data is None:
        raise TaskError("ProcessDied", f"task process exited with {proc.exitcode}")
    return outcome(data)


def _read(reader: Connection) -> bytes | None:
    """The child's one reply, or ``None`` if it died without one."""
    try:
        return reader.recv_bytes()
    except EOFError:
        return None


def outcome(data: bytes) -> Any:
    """The output of a child's reply, or its failure raised (``TaskFailed``, ``Retry``,
    ``TaskError``)."""
    try:
        reply = unpack(data)
    except ProtocolError as exc:
        raise TaskError("ProtocolError", f"task process sent garbage: {exc}") from None
    if not isinstance(reply, dict):
        raise TaskError("ProtocolError", "task process sent something other than a map")
    if reply.get("ok"):
        return reply.get("output")
    if reply.get("type") == "TaskFailed":
        raise TaskFailed(reply.get("message", ""))
    if reply.get("type") == "Retry":
        raise Retry(reply.get("message", ""))
    raise TaskError(
        str(reply.get("type"))[:200],
        str(reply.get("message"))[:TRACEBACK_LIMIT],
        str(reply.get("tb", ""))[-TRACEBACK_LIMIT:],
    )
