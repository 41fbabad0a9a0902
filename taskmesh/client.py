"""The client: submit tasks, wait for results, read status (the Python API behind the CLI).

``from taskmesh import Client`` imports this module, ``protocol`` and pyzmq;
nothing of the manager or the worker.

One ``Client`` may be shared by any number of coroutines: each request
carries its own ``req`` number and a single receiver routes every reply to
the request that asked for it.  Results are pushed by the manager
(``watch``), never polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from protocol import (
    DEFAULT_PORT,
    MAX_MESSAGE_BYTES,
    Error,
    Finished,
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
    Watch,
    WatchReply,
    decode,
    encode,
)
from protocol.codec import batches_by_size
from runtime.handshake import HandshakeWatch
from runtime.keys import CurveClient
from runtime.sockets import configure, tcp

R = TypeVar("R", bound=Message)

#: Tasks per ``Submit`` message, and submits in flight at once.
SUBMIT_BATCH = 500
SUBMITS_IN_FLIGHT = 4
#: Ids per ``watch``; seconds between the keep-alive ``watch`` of a waiting client.
WATCH_BATCH = 5000
KEEPALIVE = 5.0


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
        curve: CurveClient | None = None,
    ) -> None:
        self.endpoint = tcp(host, port)
        self.timeout = timeout
        self.max_bytes = max_message_bytes
        self.epoch = ""  # the manager instance last heard from
        self._req = itertools.count(1)
        self._ctx = zmq.asyncio.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        configure(self._sock, max_message_bytes)
        if curve is not None:  # CURVE: this client's key, and the manager's it trusts
            curve.apply(self._sock)
        self._sock.setsockopt(zmq.IDENTITY, f"client-{uuid.uuid4().hex[:12]}".encode())
        #: Why the last handshake with the manager failed ("" once it answers).
        self.refusal = ""
        self._handshake = HandshakeWatch(self._sock, curve is not None, self._refused)
        self._sock.connect(self.endpoint)
        self._replies: dict[int, asyncio.Future[Message]] = {}
        self._finished: dict[str, TaskState] = {}  # pushed, not yet handed to a waiter
        self._arrived = asyncio.Event()
        self._receiver: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
        self.close()

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
        self._handshake.close()
        self._sock.close(linger=0)
        self._ctx.term()

    # ------------------------------------------------------------------ plumbing

    async def request(self, msg: Message, reply_type: type[R], timeout: float | None = None) -> R:
        """Send ``msg`` and wait for the reply carrying its ``req`` (concurrency-safe)."""
        if self._receiver is None:
            self._receiver = asyncio.get_running_loop().create_task(self._receive())
            self._handshake.start()
        req: int = getattr(msg, "req", 0)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[req] = future
        try:
            async with asyncio.timeout(timeout or self.timeout):
                await self._sock.send(encode(msg, self.max_bytes))  # no connection: waits
                reply = await future
        except TimeoutError:
            if self.refusal:
                raise ManagerError("handshake", self.refusal) from None
            raise ManagerUnavailable(f"no reply from the manager at {self.endpoint}") from None
        finally:
            self._replies.pop(req, None)
        if isinstance(reply, Error):
            raise ManagerError(reply.code, reply.message)
        if not isinstance(reply, reply_type):
            raise ManagerError("unexpected", f"{reply.TYPE} in answer to {msg.TYPE}")
        return reply

    async def _receive(self) -> None:
        """The one reader of the socket: replies to their requests, pushes to the waiters."""
        while True:
            try:
                reply = decode(await self._sock.recv(), self.max_bytes)
            except ProtocolError:
                continue
            except zmq.ZMQError:
                return  # closed
            self.refusal = ""
            if isinstance(reply, Finished):
                self.epoch = reply.epoch
                for state in reply.tasks:
                    self._finished[state.id] = state
                self._arrived.set()
                continue
            req = getattr(reply, "req", 0)
            future = self._replies.get(req)
            if future is not None and not future.done():
                future.set_result(reply)

    def _refused(self, why: str) -> None:
        """A handshake failed: what waits for a reply fails now, with the reason."""
        self.refusal = why
        for future in self._replies.values():
            if not future.done():
                future.set_exception(ManagerError("handshake", why))

    # ------------------------------------------------------------------ API

    async def submit(self, tasks: Sequence[TaskSpec], *, watch: bool = False) -> SubmitReply:
        """Submit tasks in batches (several in flight); the reply lists new ids and known ones.

        With ``watch`` the manager pushes each task's final result to this
        client, for ``wait`` to collect.
        """
        batches = [
            chunk[start : start + SUBMIT_BATCH]
            for chunk in batches_by_size(tasks, self.max_bytes - 4096)
            for start in range(0, len(chunk), SUBMIT_BATCH)
        ]
        window = asyncio.Semaphore(SUBMITS_IN_FLIGHT)

        async def one(part: list[TaskSpec]) -> SubmitReply:
            async with window:
                msg = Submit(req=next(self._req), tasks=part, watch=watch)
                return await self.request(msg, SubmitReply)

        replies = await asyncio.gather(*(one(b) for b in batches))
        return SubmitReply(
            req=replies[-1].req if replies else 0,
            accepted=[i for r in replies for i in r.accepted],
            known=[s for r in replies for s in r.known],
        )

    async def status(self) -> StatusReply:
        return await self.request(StatusRequest(req=next(self._req)), StatusReply)

    async def tasks(self, ids: Sequence[str] = ()) -> list[TaskState]:
        """States of ``ids`` in that order (``unknown`` for ids never submitted),
        or of every task in submission order when ``ids`` is empty (paged).
        """
        out: list[TaskState] = []
        if not ids:
            after = 0
            while True:
                msg = TasksRequest(req=next(self._req), after=after)
                reply = await self.request(msg, TasksReply)
                out += reply.tasks
                if not reply.next:
                    return out
                after = reply.next
        while len(out) < len(ids):
            chunk = list(ids[len(out) : len(out) + 1000])
            reply = await self.request(TasksRequest(req=next(self._req), ids=chunk), TasksReply)
            if not reply.tasks:
                raise ManagerError("too_large", f"task {chunk[0]!r} does not fit in a reply")
            out += reply.tasks
        return out

    async def run(self, spec: TaskSpec, timeout: float | None = None) -> TaskState:
        """Submit one task and wait for its final state (the shortest round trip)."""
        await self.submit([spec], watch=True)
        (state,) = await self.wait([spec.id], timeout=timeout)
        return state

    async def wait(
        self,
        ids: Sequence[str],
        timeout: float | None = None,
        progress: Callable[[int, int], Any] | None = None,
    ) -> list[TaskState]:
        """Wait until every task in ``ids`` has its final state; returns them in order.

        The manager pushes results as they come (tasks submitted with
        ``watch=True`` are already watched).  Survives a manager restart: the
        watches are renewed with the new instance.  Raises ``TimeoutError``
        after ``timeout`` seconds, ``ManagerError`` (code ``unknown``) for ids
        the manager does not know.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        states: dict[str, TaskState] = {}
        pending = set(ids)
        watched_epoch = ""
        last_keepalive = 0.0
        while True:
            self._collect(pending, states)
            if progress is not None:
                progress(len(states), len(ids))
            if not pending:
                return [states[i] for i in ids]
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"{len(pending)} task(s) not done within {timeout}s")
            try:
                if not watched_epoch or self.epoch != watched_epoch:
                    watched_epoch = await self._watch(pending, states)
                    last_keepalive = now
                elif now - last_keepalive >= KEEPALIVE:
                    reply = await self.request(Watch(req=next(self._req)), WatchReply)
                    last_keepalive = now
                    if reply.epoch != watched_epoch:
                        self.epoch = reply.epoch
                        watched_epoch = ""  # a new manager instance: watch everything again
                        continue
                    self._collect(pending, states)
                    if reply.watching < len(pending):
                        watched_epoch = ""  # a push was lost (dropped): ask for what is final
                        continue
            except ManagerUnavailable:
                watched_epoch = ""  # the manager may be restarting: watch again when it answers
                continue
            self._collect(pending, states)
            if not pending:
                continue
            left = KEEPALIVE if deadline is None else min(KEEPALIVE, deadline - time.monotonic())
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max(0.0, left))

    def _collect(self, pending: set[str], states: dict[str, TaskState]) -> None:
        for task_id in [i for i in pending if i in self._finished]:
            states[task_id] = self._finished.pop(task_id)
            pending.discard(task_id)

    async def _watch(self, pending: set[str], states: dict[str, TaskState]) -> str:
        """Watch ``pending`` with the manager; collect those already final."""
        epoch = ""
        for chunk in _chunks(sorted(pending), WATCH_BATCH):
            reply = await self.request(Watch(req=next(self._req), ids=chunk), WatchReply)
            epoch = reply.epoch
            for state in reply.done:
                self._finished[state.id] = state
            if reply.unknown:
                raise ManagerError(
                    "unknown", f"the manager does not know task(s) {', '.join(reply.unknown[:10])}"
                )
        self.epoch = epoch
        self._collect(pending, states)
        return epoch


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
