"""What every agent shares, manager and worker alike: Ceylon's callback model.

Callbacks run one at a time, in arrival order, on a dispatcher task of their
own, so a slow ``on_message`` never stalls the socket loop (heartbeats keep
flowing).  The queue feeding the dispatcher is bounded: when it is full the
socket loop waits, and ZeroMQ's high-water marks push back on the sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from loguru import logger

from protocol import DEFAULT_WORKSPACE_ID, AgentDetail, AgentRef, SequenceTracker

Event = Callable[[], Awaitable[None]]

EVENT_QUEUE_SIZE = 10_000
#: Callbacks run between two forced yields to the event loop.
YIELD_EVERY = 256


def now_ns() -> int:
    return time.time_ns()


def new_agent_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


def ref_of(detail: AgentDetail) -> AgentRef:
    return AgentRef(id=detail.id, name=detail.name, role=detail.role)


def detail_of(ref: AgentRef) -> AgentDetail:
    return AgentDetail(name=ref.name, id=ref.id, role=ref.role)


class AgentBase:
    """Identity, peers, callbacks and the stop flag of one agent."""

    def __init__(
        self, name: str, role: str, workspace_id: str = DEFAULT_WORKSPACE_ID, agent_id: str = ""
    ) -> None:
        self.name = name
        self.role = role
        self.workspace_id = workspace_id
        self.id = agent_id or new_agent_id(name)
        self._peers: dict[str, AgentDetail] = {}
        self._events: asyncio.Queue[Event] | None = None
        self._stopping: asyncio.Event | None = None
        self._send_seq = 0
        self.gaps = SequenceTracker()

    # ------------------------------------------------------------------ Ceylon API

    def details(self) -> AgentDetail:
        return AgentDetail(name=self.name, id=self.id, role=self.role)

    def get_connected_agents(self) -> list[AgentDetail]:
        return list(self._peers.values())

    def get_agent_by_id(self, agent_id: str) -> AgentDetail | None:
        return self._peers.get(agent_id)

    def get_agents_by_role(self, role: str) -> list[AgentDetail]:
        return [a for a in self._peers.values() if a.role == role]

    async def on_message(self, agent_id: str, data: bytes, time: int) -> None:
        """Application bytes from ``agent_id``, sent at ``time`` (unix ns)."""

    async def on_agent_connected(self, topic: str, agent: AgentDetail) -> None:
        """``agent`` joined: both its channels are proven live."""

    async def on_agent_disconnected(self, topic: str, agent: AgentDetail) -> None:
        """``agent`` left, or stopped heartbeating for the liveness window."""

    async def run(self, inputs: bytes) -> None:
        """The agent's own work, started once it is up; the agent runs on when it returns."""

    def request_stop(self) -> None:
        """What a signal asks for: stop (subclasses may drain first)."""
        self.stopping.set()

    async def stop(self) -> None:
        """Ask the agent to stop; its ``arun_*`` call returns once it has shut down."""
        self.stopping.set()

    # ------------------------------------------------------------------ internals

    @property
    def stopping(self) -> asyncio.Event:
        if self._stopping is None:
            self._stopping = asyncio.Event()
        return self._stopping

    def _next_seq(self) -> int:
        self._send_seq += 1
        return self._send_seq

    @property
    def events(self) -> asyncio.Queue[Event]:
        if self._events is None:
            self._events = asyncio.Queue(EVENT_QUEUE_SIZE)
        return self._events

    async def _emit(self, event: Event) -> None:
        await self.events.put(event)

    async def _deliver(self, sender: str, data: bytes, sent: int, seq: int = 0) -> None:
        if seq:
            missed = self.gaps.see(sender, seq)
            if missed:
                logger.warning(
                    "{}: {} broadcast(s) from {} never arrived", self.name, missed, sender
                )
        await self._emit(lambda: self.on_message(sender, data, sent))

    async def _peer_up(self, detail: AgentDetail) -> None:
        if detail.id == self.id or detail.id in self._peers:
            return
        self._peers[detail.id] = detail
        await self._emit(lambda: self.on_agent_connected(self.workspace_id, detail))

    async def _peer_down(self, agent_id: str) -> None:
        detail = self._peers.pop(agent_id, None)
        self.gaps.forget(agent_id)
        if detail is not None:
            await self._emit(lambda: self.on_agent_disconnected(self.workspace_id, detail))

    async def _dispatch_loop(self) -> None:
        """Run callbacks one by one; a callback's exception is logged, never fatal."""
        done = 0
        while True:
            event = await self.events.get()
            try:
                await event()
            except Exception:
                logger.exception("{}: callback raised", self.name)
            done += 1
            if done % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a backlog of callbacks must not starve heartbeats

    async def _run_user(self, inputs: bytes) -> None:
        try:
            await self.run(inputs)
        except Exception:
            logger.exception("{}: run() raised", self.name)


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
