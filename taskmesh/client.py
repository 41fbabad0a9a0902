"""The client: submit tasks, wait for results, read status (the Python API behind the CLI).

``from taskmesh import Client`` imports this module, ``protocol`` and pyzmq;
nothing of the manager or the worker.

One ``Client`` may be shared by any number of coroutines: its
``Connection`` (``taskmesh.connection``) routes every reply to the request
that asked for it.  Results are pushed by the manager (``watch``), never
polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from protocol import (
    DEFAULT_PORT,
    MAX_MESSAGE_BYTES,
    Finished,
    Message,
    ResultStatus,
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
)
from protocol.codec import pack_chunks
from protocol.compiled import encoder
from runtime.keys import CurveClient
from taskmesh.connection import Connection
from taskmesh.errors import ManagerError, ManagerUnavailable, WaitTimeout
from taskmesh.operations import Operations

R = TypeVar("R", bound=Message)

#: Tasks per ``Submit`` message, and submits in flight at once.
SUBMIT_BATCH = 500
_spec = encoder(TaskSpec)
SUBMITS_IN_FLIGHT = 4
#: Ids per ``watch``; seconds between the keep-alive ``watch`` of a waiting client.
WATCH_BATCH = 5000
KEEPALIVE = 5.0


#: ``progress(done, failed, total)``: tasks final so far, how many of them did not succeed.
ProgressFn = Callable[[int, int, int], Any]
#: Where ``_await_final`` hands each final task: its full state, or only its status (brief).
Sink = Callable[[str, "TaskState | str"], Any]


class Client(Operations):
    """``async with Client(host, port) as c: await c.submit([...])``; the operator
    actions (``cancel``, ``retry``, ``purge``, ``history``): ``taskmesh.operations``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        timeout: float = 5.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        curve: CurveClient | None = None,
    ) -> None:
        self.conn = Connection(host, port, timeout, max_message_bytes, curve, self._pushed)
        self.endpoint = self.conn.endpoint
        self.max_bytes = max_message_bytes
        self.epoch = ""  # the manager instance last heard from
        self._req = self.conn.reqs
        # pushed, not yet handed to a waiter: full states, or result statuses (brief)
        self._finished: dict[str, TaskState | str] = {}
        self._watched: dict[str, str] = {}  # task id -> epoch of the manager watching it
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.conn.aclose()

    def close(self) -> None:
        self.conn.close()

    @property
    def refusal(self) -> str:
        """Why the last handshake with the manager failed ("" once it answers)."""
        return self.conn.refusal

    async def request(self, msg: Message, reply_type: type[R], timeout: float | None = None) -> R:
        """Send ``msg`` and wait for the reply carrying its ``req`` (concurrency-safe)."""
        return await self.conn.request(msg, reply_type, timeout)

    def _pushed(self, msg: Finished) -> None:
        """A ``finished`` push: keep its states (or statuses) for the waiters."""
        self.epoch = msg.epoch
        for state in msg.tasks:
            self._finished[state.id] = state
        self._finished.update(zip(msg.ids, msg.statuses, strict=True))
        self._arrived.set()

    # ------------------------------------------------------------------ API

    async def submit(
        self, tasks: Sequence[TaskSpec], *, watch: bool = False, brief: bool = False
    ) -> SubmitReply:
        """Submit tasks in batches (several in flight); the reply lists new ids and known ones.

        With ``watch`` the manager pushes each task's final result to this
        client, for ``wait`` to collect; with ``brief`` too, only its status
        (what ``count`` needs: far less to encode and decode on big runs).
        """
        window = asyncio.Semaphore(SUBMITS_IN_FLIGHT)

        async def one(req: int, data: bytes) -> SubmitReply:
            async with window:
                return await self.conn.exchange(req, data, Submit.TYPE, SubmitReply)

        messages = self._submits(tasks, watch, brief)
        if len(messages) == 1:  # the common case: no Task per message
            ((req, data),) = messages
            replies = [await self.conn.exchange(req, data, Submit.TYPE, SubmitReply)]
        else:
            replies = await asyncio.gather(*(one(req, data) for req, data in messages))
        if watch:
            for reply in replies:
                self.epoch = reply.epoch
                for task_id in reply.accepted:
                    self._watched[task_id] = reply.epoch
                for state in reply.known:
                    self._watched[state.id] = reply.epoch
        unmatched = {i: why for reply in replies for i, why in reply.unmatched.items()}
        return SubmitReply(
            req=replies[-1].req if replies else 0,
            accepted=[i for r in replies for i in r.accepted],
            known=[s for r in replies for s in r.known],
            unmatched=unmatched,
        )

    def _submits(
        self, tasks: Sequence[TaskSpec], watch: bool, brief: bool
    ) -> list[tuple[int, bytes]]:
        """``submit`` messages of at most ``SUBMIT_BATCH`` tasks and ``max_bytes`` each, with
        their ``req``; each spec is encoded once (too large alone: ``ProtocolError``)."""
        items = [_spec(task) for task in tasks]
        out: list[tuple[int, bytes]] = []
        req = 0

        def wrap(batch: list[Any]) -> dict[str, Any]:
            nonlocal req
            req = next(self._req)  # the last one made is the one sent
            return {"type": Submit.TYPE, "req": req, "tasks": batch, "watch": watch, "brief": brief}

        for start in range(0, len(items), SUBMIT_BATCH):
            for data, _ in pack_chunks(items[start : start + SUBMIT_BATCH], wrap, self.max_bytes):
                out.append((req, data))
        return out

    async def status(self, worker: str = "") -> StatusReply:
        """Workers and counts; ``worker`` (an id or a name): only those, with every running id."""
        return await self.request(StatusRequest(req=next(self._req), worker=worker), StatusReply)

    async def tasks(
        self, ids: Sequence[str] = (), *, state: str = "", limit: int | None = None
    ) -> list[TaskState]:
        """States of ``ids`` in that order (``unknown`` for ids never submitted),
        or of every task in submission order when ``ids`` is empty (paged):
        only those in ``state`` (a task state, ``failed``, or a result status),
        at most ``limit``.
        """
        out: list[TaskState] = []
        if not ids:
            after = 0
            while limit is None or len(out) < limit:
                msg = TasksRequest(req=next(self._req), after=after, state=state)
                reply = await self.request(msg, TasksReply)
                out += reply.tasks
                if not reply.next:
                    break
                after = reply.next
            return out[:limit]
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
        progress: ProgressFn | None = None,
    ) -> list[TaskState]:
        """Wait until every task in ``ids`` has its final state; returns them in order.

        The manager pushes results as they come (tasks submitted with
        ``watch=True`` by this client are already watched).  Survives a
        manager restart: the watches are renewed with the new instance.
        Raises ``WaitTimeout`` (a ``TimeoutError`` with the states it has)
        after ``timeout`` seconds, ``ManagerError`` (code ``unknown``) for ids
        the manager does not know.
        """
        states: dict[str, TaskState | str] = {}
        try:
            await self._await_final(ids, timeout, progress, states.__setitem__)
        except TimeoutError as exc:
            full = await self._full(states)
            done = [full[i] for i in ids if i in full]
            pending = [i for i in ids if i not in full]
            raise WaitTimeout(str(exc), done, pending) from None
        full = await self._full(states)
        return [full[i] for i in ids]

    async def _full(self, states: dict[str, TaskState | str]) -> dict[str, TaskState]:
        """Full states where only a status was pushed (the ids were also watched ``brief``)."""
        brief = [task_id for task_id, state in states.items() if isinstance(state, str)]
        read = {state.id: state for state in await self.tasks(brief)} if brief else {}
        return {i: read[i] if isinstance(s, str) else s for i, s in states.items()}

    async def count(
        self,
        ids: Sequence[str],
        timeout: float | None = None,
        progress: ProgressFn | None = None,
    ) -> Counter[str]:
        """``wait`` that keeps only how many tasks ended with each status (big runs)."""
        tally: Counter[str] = Counter()

        def keep(task_id: str, state: TaskState | str) -> None:
            tally[_status(state)] += 1

        await self._await_final(ids, timeout, progress, keep, brief=True)
        return tally

    async def _await_final(
        self,
        ids: Sequence[str],
        timeout: float | None,
        progress: ProgressFn | None,
        sink: Sink,
        brief: bool = False,
    ) -> None:
        """Hand each of ``ids`` to ``sink`` once final; watches are ``brief`` (statuses) or not."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = set(ids)
        total = len(pending)
        failed = 0

        def take(task_id: str, state: TaskState | str) -> None:
            nonlocal failed
            if _status(state) != ResultStatus.SUCCEEDED:
                failed += 1
            sink(task_id, state)

        last_keepalive = time.monotonic()
        settled = ""  # the epoch at which every pending id was known to be watched
        while True:
            self._collect(pending, take)
            if progress is not None:
                progress(total - len(pending), failed, total)
            if not pending:
                return
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"{len(pending)} task(s) not done within {timeout}s")
            try:
                unwatched = []
                if settled != self.epoch or not self.epoch:  # not one scan per push
                    unwatched = [i for i in pending if self._watched.get(i) != self.epoch]
                    settled = "" if unwatched else self.epoch
                if unwatched or not self.epoch:
                    await self._watch(unwatched or [], pending, take, brief)
                    last_keepalive = now
                elif now - last_keepalive >= KEEPALIVE:
                    reply = await self.request(Watch(req=next(self._req)), WatchReply)
                    last_keepalive = now
                    self.epoch = reply.epoch  # a new instance: the next pass watches again
                    self._check_watches(reply, pending, take)
                    settled = ""
                    continue
            except ManagerUnavailable:
                continue  # the manager may be restarting: watch again when it answers
            self._collect(pending, take)
            if not pending:
                continue
            left = KEEPALIVE if deadline is None else min(KEEPALIVE, deadline - time.monotonic())
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, left)):  # no Task per wait (wait_for's)
                    await self._arrived.wait()

    def _check_watches(self, reply: WatchReply, pending: set[str], sink: Sink) -> None:
        """Fewer ids watched than still pending: a push was dropped (this client did not
        read fast enough), so the next pass watches them again and gets what is final."""
        self._collect(pending, sink)
        if reply.watching < len(pending):
            for task_id in pending:
                self._watched.pop(task_id, None)

    def _collect(self, pending: set[str], sink: Sink) -> None:
        """Hand the pushed states of ``pending`` tasks to ``sink`` (others stay for others)."""
        mine = [i for i in self._finished if i in pending]
        for task_id in mine:
            sink(task_id, self._finished.pop(task_id))
            pending.discard(task_id)
            self._watched.pop(task_id, None)

    async def _watch(self, ids: list[str], pending: set[str], sink: Sink, brief: bool) -> None:
        """Watch ``ids`` with the manager (``[]``: learn its epoch); collect those already final."""
        for chunk in _chunks(sorted(ids), WATCH_BATCH) if ids else [[]]:
            msg = Watch(req=next(self._req), ids=chunk, brief=brief)
            reply = await self.request(msg, WatchReply)
            self.epoch = reply.epoch
            for task_id in chunk:
                self._watched[task_id] = reply.epoch
            for state in reply.done:
                self._finished[state.id] = state
            if reply.unknown:
                raise ManagerError(
                    "unknown", f"the manager does not know task(s) {', '.join(reply.unknown[:10])}"
                )
        self._collect(pending, sink)


def _status(state: TaskState | str) -> str:
    """A final task's result status (what a brief push carries)."""
    if isinstance(state, str):
        return state
    return state.result.status if state.result is not None else state.state


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
