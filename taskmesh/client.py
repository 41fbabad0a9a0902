"""The client: submit tasks, read status and results (the Python API behind the CLI).

``from taskmesh import Client`` imports this module, ``protocol`` and pyzmq;
nothing of the manager or the worker.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from protocol import (
    DEFAULT_PORT,
    MAX_MESSAGE_BYTES,
    Error,
    Message,
    ProtocolError,
    StatusReply,
    StatusRequest,
    Submit,
    SubmitReply,
    TaskSpec,
    TasksReply,
    TasksRequest,
    TaskState,
    decode,
    encode,
)
from protocol.codec import batches_by_size
from runtime.sockets import configure, tcp

R = TypeVar("R", bound=Message)

#: Tasks per ``Submit`` message.
SUBMIT_BATCH = 500


class ManagerUnavailable(ConnectionError):
    """No reply from the manager in time."""


class ManagerError(RuntimeError):
    """The manager refused a request; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Client:
    """``async with Client(host, port) as c: await c.submit([...])``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        timeout: float = 5.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.endpoint = tcp(host, port)
        self.timeout = timeout
        self.max_bytes = max_message_bytes
        self._req = itertools.count(1)
        self._ctx = zmq.asyncio.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        configure(self._sock, max_message_bytes)
        self._sock.setsockopt(zmq.IDENTITY, f"client-{uuid.uuid4().hex[:12]}".encode())
        self._sock.connect(self.endpoint)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()

    async def request(self, msg: Message, reply_type: type[R], timeout: float | None = None) -> R:
        """Send ``msg`` and wait for the reply carrying its ``req``."""
        req = getattr(msg, "req", 0)
        await self._sock.send(encode(msg))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not await self._sock.poll(left * 1000):
                raise ManagerUnavailable(f"no reply from the manager at {self.endpoint}")
            try:
                reply = decode(await self._sock.recv(), self.max_bytes)
            except ProtocolError:
                continue
            if isinstance(reply, Error) and reply.req in (0, req):
                raise ManagerError(reply.code, reply.message)
            if isinstance(reply, reply_type) and getattr(reply, "req", None) == req:
                return reply

    async def submit(self, tasks: Sequence[TaskSpec]) -> SubmitReply:
        """Submit tasks (in batches); the reply lists new ids and the states of known ones."""
        accepted: list[str] = []
        known: list[TaskState] = []
        req = 0
        for chunk in batches_by_size(tasks, self.max_bytes - 4096):
            for start in range(0, len(chunk), SUBMIT_BATCH):
                req = next(self._req)
                part = chunk[start : start + SUBMIT_BATCH]
                reply = await self.request(Submit(req=req, tasks=part), SubmitReply)
                accepted += reply.accepted
                known += reply.known
        return SubmitReply(req=req, accepted=accepted, known=known)

    async def status(self) -> StatusReply:
        return await self.request(StatusRequest(req=next(self._req)), StatusReply)

    async def tasks(self, ids: Sequence[str] = ()) -> list[TaskState]:
        """States of ``ids`` in that order (``unknown`` for ids never submitted),
        or of every task in submission order when ``ids`` is empty.

        The manager answers as many as fit in one message; this pages through.
        """
        out: list[TaskState] = []
        if not ids:
            while True:
                req = TasksRequest(req=next(self._req), offset=len(out))
                reply = await self.request(req, TasksReply)
                out += reply.tasks
                if not reply.tasks or len(out) >= reply.total:
                    return out
        while len(out) < len(ids):
            chunk = list(ids[len(out) : len(out) + 1000])
            reply = await self.request(TasksRequest(req=next(self._req), ids=chunk), TasksReply)
            if not reply.tasks:
                raise ManagerError("too_large", f"task {chunk[0]!r} does not fit in a reply")
            out += reply.tasks
        return out

    async def wait(
        self,
        ids: Sequence[str],
        timeout: float | None = None,
        poll: float = 0.1,
        progress: Callable[[int, int], Any] | None = None,
    ) -> list[TaskState]:
        """Poll until every task in ``ids`` is done; survives a manager restart meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        states: dict[str, TaskState] = {}
        pending = list(ids)
        while pending:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} task(s) not done within {timeout}s")
            try:
                for state in await self.tasks(pending):
                    if state.state == "done":
                        states[state.id] = state
            except ManagerUnavailable:
                pass  # the manager may be restarting; keep polling until the deadline
            pending = [i for i in pending if i not in states]
            if progress is not None:
                progress(len(states), len(ids))
            if pending:
                await asyncio.sleep(poll)
        return [states[i] for i in ids]
