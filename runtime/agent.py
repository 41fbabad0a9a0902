"""What every agent shares, manager and worker alike: identity, peers, Ceylon's callbacks.

Callbacks run one at a time, in arrival order, on a dispatcher task of their
own, so a slow ``on_message`` never stalls a socket loop (heartbeats keep
flowing).  Protocol handlers queue callbacks without waiting (they are plain
functions); the socket loops call ``wait_for_room`` between batches, so a
backlog of callbacks pushes back on the sockets, and ZeroMQ's high-water marks
push back on the sender.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from loguru import logger

from protocol import DEFAULT_WORKSPACE_ID, AgentDetail, AgentRef, SequenceTracker

Event = Callable[[], Awaitable[None]]

#: Callbacks queued before the socket loops stop reading (backpressure).
EVENT_BACKLOG = 10_000
#: Messages or callbacks handled between two forced yields to the event loop.
YIELD_EVERY = 256


class PeerAgent(Protocol):
    """An agent ``Admin.arun_admin`` runs beside itself in the same process (a ``Worker``)."""

    async def arun_worker(self, inputs: bytes = b"") -> None: ...

    async def stop(self) -> None: ...


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
        self._events: deque[Event] = deque()
        self._event_ready: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
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
        """``agent`` left or was lost.

        The manager loses an agent silent for the liveness window and then the
        grace (``--requeue-grace``); meanwhile it is only ``unreachable`` and
        stays connected.  A worker loses every peer when its manager is silent
        for the window.
        """

    async def run(self, inputs: bytes) -> None:
        """The agent's own work, started once it is up; the agent runs on when it returns."""

    def request_stop(self) -> None:
        """What a signal asks for: stop (an agent with work in hand may drain first)."""
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

    def _emit(self, event: Event) -> None:
        """Queue a callback for the dispatcher (never waits; see ``wait_for_room``)."""
        self._events.append(event)
        if self._event_ready is not None:
            self._event_ready.set()

    async def wait_for_room(self) -> None:
        """Wait while the callback backlog is full (socket loops call this between batches)."""
        while len(self._events) >= EVENT_BACKLOG:
            if self._room is None:
                self._room = asyncio.Event()
            self._room.clear()
            await self._room.wait()

    def deliver(self, sender: str, data: bytes, sent: int, seq: int = 0) -> None:
        """Application bytes arrived: log any broadcasts missed, then call ``on_message``."""
        if seq:
            missed = self.gaps.see(sender, seq)
            if missed:
                logger.warning(
                    "{}: {} broadcast(s) from {} never arrived", self.name, missed, sender
                )
        self._emit(lambda: self.on_message(sender, data, sent))

    def peer_up(self, detail: AgentDetail) -> None:
        if detail.id == self.id or detail.id in self._peers:
            return
        self._peers[detail.id] = detail
        self._emit(lambda: self.on_agent_connected(self.workspace_id, detail))

    def peer_down(self, agent_id: str) -> None:
        detail = self._peers.pop(agent_id, None)
        self.gaps.forget(agent_id)
        if detail is not None:
            self._emit(lambda: self.on_agent_disconnected(self.workspace_id, detail))

    async def _dispatch_loop(self) -> None:
        """Run callbacks one by one; a callback's exception is logged, never fatal."""
        self._event_ready = ready = asyncio.Event()
        done = 0
        while True:
            if not self._events:
                ready.clear()
                await ready.wait()
                continue
            event = self._events.popleft()
            if self._room is not None and len(self._events) < EVENT_BACKLOG // 2:
                self._room.set()
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
