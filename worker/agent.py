"""The worker's agent layer: Ceylon's ``Worker`` on a DEALER and a SUB socket.

On its ``ManagerLink`` (the sockets), it registers (retrying until a manager
answers), proves its SUB receives by answering the manager's probe,
heartbeats, notices a silent or restarted manager and registers again, and
delivers direct messages and broadcasts to the Ceylon callbacks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger

from protocol import (
    DEFAULT_PORT,
    DEFAULT_WORKSPACE_ID,
    HEARTBEAT_INTERVAL,
    LIVENESS,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Broadcast,
    Bye,
    Direct,
    Error,
    Heartbeat,
    Joined,
    Left,
    Message,
    Probe,
    Ready,
    Register,
    ResultKey,
    Roster,
    Welcome,
    encode,
)
from worker.base import AgentBase, detail_of, now_ns, supervise
from worker.link import ManagerLink
from worker.sockets import check_port, reachable

Handler = Callable[[Any], Awaitable[None]]

OFFLINE = "offline"  # no manager: registering
PROBING = "probing"  # welcomed; waiting for the probe on SUB
CONNECTED = "connected"

FATAL_ERRORS = {"version", "workspace", "identity", "registration"}
#: Seconds in PROBING before the worker warns that the PUB may be unreachable.
PROBE_PATIENCE = 5.0


class WorkerRefused(RuntimeError):
    """The manager refused this worker for good (protocol version, workspace, identity)."""


class Worker(AgentBase):
    """An agent process.  ``await worker.arun_worker(inputs)`` runs until ``stop()``."""

    def __init__(
        self,
        name: str,
        workspace_id: str = DEFAULT_WORKSPACE_ID,
        admin_peer: str = "",
        admin_port: int = DEFAULT_PORT,
        role: str = "worker",
        admin_ip: str = "127.0.0.1",
        *,
        skill: int = 0,
        capacity: int = 0,
        kinds: tuple[str, ...] = (),
        agent_id: str = "",
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        liveness: int = LIVENESS,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(name, role, workspace_id, agent_id)
        check_port(admin_port)
        self.admin_peer = admin_peer
        self.admin_ip = admin_ip
        self.admin_port = admin_port
        self.skill = skill
        self.capacity = capacity
        self.kinds = kinds
        self.interval = heartbeat_interval
        self.liveness = liveness
        self.max_bytes = max_message_bytes
        self.state = OFFLINE
        self.link = ManagerLink(self.id, admin_ip, admin_port, max_message_bytes, name)
        self.manager_id = ""
        self.epoch = ""
        self._heard = time.monotonic()
        self._last_register = 0.0
        self._last_beat = 0.0
        self._refused: WorkerRefused | None = None
        self.bye_reason = "stopping"
        self._probing_since = 0.0
        self._connected = asyncio.Event()
        self._handlers: dict[type[Message], Handler] = {
            Welcome: self._on_welcome,
            Heartbeat: self._on_heartbeat,
            Direct: self._on_direct,
            Roster: self._on_roster,
            Error: self._on_error,
            Bye: self._on_manager_bye,
        }

    # ------------------------------------------------------------------ Ceylon API

    async def arun_worker(self, inputs: bytes = b"") -> None:
        """Connect to the manager and serve until ``stop()``; raises ``WorkerRefused``."""
        self.link.open()
        try:
            await supervise(
                self.stopping,
                self._dealer_loop(),
                self._sub_loop(),
                self._session_loop(),
                self._dispatch_loop(),
                self._after_connect(self._run_user(inputs)),
                *self._extra_loops(),
            )
        finally:
            await self._shutdown()
        if self._refused is not None:
            raise self._refused

    async def broadcast(self, data: bytes) -> None:
        """Send ``data`` to the manager and every other connected agent."""
        await self._send_app(
            Broadcast(sender=self.id, seq=self._next_seq(), time=now_ns(), data=bytes(data))
        )

    async def send_direct(self, agent_id: str, data: bytes) -> None:
        """Send ``data`` to one agent (the manager's id reaches the manager)."""
        await self._send_app(
            Direct(sender=self.id, target=agent_id, seq=0, time=now_ns(), data=bytes(data))
        )

    @property
    def connected(self) -> bool:
        return self.state == CONNECTED

    # ------------------------------------------------------------------ wire

    def send_nowait(self, msg: Message | bytes) -> bool:
        """Send to the manager if a connection can take it now; ``False`` otherwise."""
        return self.link.send_nowait(msg if isinstance(msg, bytes) else encode(msg))

    async def _send_app(self, msg: Message) -> None:
        if self.state != CONNECTED:
            raise ConnectionError(f"{self.name} is not connected to a manager")
        await self.link.send(encode(msg), self.interval * self.liveness)

    async def _shutdown(self) -> None:
        bye = encode(Bye(reason=self.bye_reason)) if self.state != OFFLINE else None
        self.link.close(bye)
        self.state = OFFLINE

    async def _dealer_loop(self) -> None:
        async for msg in self.link.from_manager():
            self._heard = time.monotonic()
            handler = self._handlers.get(type(msg))
            if handler is None:
                logger.warning("{}: unexpected {} from the manager", self.name, msg.TYPE)
                continue
            try:
                await handler(msg)
            except Exception:
                logger.exception("{}: handler for {} failed", self.name, msg.TYPE)

    async def _sub_loop(self) -> None:
        async for msg in self.link.published():
            try:
                await self._on_published(msg)
            except Exception:
                logger.exception("{}: handling {} failed", self.name, msg.TYPE)

    async def _session_loop(self) -> None:
        """Register while offline; heartbeat while online; reconnect when the manager is silent."""
        while True:
            now = time.monotonic()
            if self.state == OFFLINE:
                if now - self._last_register >= min(self.interval, 0.25):
                    self._register(now)
            else:
                await self._keep_alive(now)
            await asyncio.sleep(min(self.interval / 4, 0.1))

    async def _keep_alive(self, now: float) -> None:
        if self.link.busy:
            self._heard = now  # still working through what arrived: proof of life too
        if now - self._heard > self.interval * self.liveness:
            logger.warning(
                "{}: manager silent for {:.1f}s, reconnecting", self.name, now - self._heard
            )
            await self._go_offline()
            self.link.new_dealer()
            return
        if now - self._last_beat >= self.interval:
            self._last_beat = now
            sent = self.send_nowait(
                Heartbeat(epoch=self.epoch, time=now_ns(), running=self.running)
            )
            logger.trace("{}: heartbeat {}", self.name, "sent" if sent else "not sent")
        if self.state == PROBING and now - self._probing_since > PROBE_PATIENCE:
            self._probing_since = now
            logger.warning(
                "{}: no probe from the manager on {} yet; is that address reachable from here?",
                self.name,
                self.link.sub_endpoint,
            )

    async def _after_connect(self, coro: Any) -> None:
        await self._connected.wait()
        await coro

    def _register(self, now: float) -> None:
        self._last_register = now
        self.send_nowait(
            Register(
                version=PROTOCOL_VERSION,
                agent_id=self.id,
                name=self.name,
                role=self.role,
                workspace_id=self.workspace_id,
                skill=self.skill,
                capacity=self.capacity,
                kinds=list(self.kinds),
                epoch=self.epoch,
                time=now_ns(),
                holding=self.holding(),
            )
        )

    async def _go_offline(self) -> None:
        self.state = OFFLINE
        self._connected.clear()
        for agent in list(self._peers):
            await self._peer_down(agent)

    # ------------------------------------------------------------------ handlers

    async def _on_welcome(self, msg: Welcome) -> None:
        if msg.version != PROTOCOL_VERSION:
            self._refuse(f"manager speaks protocol {msg.version}, this worker {PROTOCOL_VERSION}")
            return
        restarted = bool(self.epoch) and msg.epoch != self.epoch
        self.epoch = msg.epoch
        self.manager_id = msg.manager_id
        self.interval = msg.heartbeat_interval
        self.liveness = msg.liveness
        self.link.connect_sub(reachable(msg.pub_endpoint, self.admin_ip))
        self.state = PROBING
        self._probing_since = time.monotonic()
        if restarted:
            logger.info("{}: manager restarted (epoch {})", self.name, msg.epoch)

    async def _on_published(self, msg: Message) -> None:
        if isinstance(msg, Probe):
            if msg.agent_id == self.id and msg.epoch == self.epoch and self.state == PROBING:
                self.send_nowait(Ready(epoch=self.epoch))
                self.state = CONNECTED
                self._connected.set()
                logger.info("{} connected to {} ({})", self.name, self.manager_id, self.epoch)
                await self._session_started()
        elif isinstance(msg, Broadcast):
            if msg.sender != self.id:
                await self._deliver(msg.sender, msg.data, msg.time, msg.seq)
        elif isinstance(msg, Joined):
            await self._peer_up(detail_of(msg.agent))
        elif isinstance(msg, Left):
            await self._peer_down(msg.agent.id)

    async def _on_heartbeat(self, msg: Heartbeat) -> None:
        if msg.epoch != self.epoch and self.state != OFFLINE:
            logger.info("{}: new manager instance {}, registering again", self.name, msg.epoch)
            await self._go_offline()

    async def _on_direct(self, msg: Direct) -> None:
        await self._deliver(msg.sender, msg.data, msg.time)

    async def _on_roster(self, msg: Roster) -> None:
        for ref in msg.agents:
            await self._peer_up(detail_of(ref))

    async def _on_error(self, msg: Error) -> None:
        if msg.code in FATAL_ERRORS:
            self._refuse(msg.message)
        elif msg.code == "unknown_peer":
            if self.state != OFFLINE:
                logger.info("{}: the manager does not know us, registering again", self.name)
                await self._go_offline()
        else:
            logger.warning("{}: manager reported {}: {}", self.name, msg.code, msg.message)

    async def _on_manager_bye(self, msg: Bye) -> None:
        logger.info("{}: manager said goodbye ({}); waiting for it", self.name, msg.reason)
        await self._go_offline()

    def _refuse(self, why: str) -> None:
        logger.error("{}: refused by the manager: {}", self.name, why)
        self._refused = WorkerRefused(why)
        self.stopping.set()

    # ------------------------------------------------------------------ task-layer hooks

    @property
    def running(self) -> int:
        """Tasks in progress, reported in heartbeats."""
        return 0

    def holding(self) -> list[ResultKey]:
        """Attempts this worker runs or holds results of, sent when (re-)registering."""
        return []

    def _extra_loops(self) -> list[Any]:
        return []

    async def _session_started(self) -> None:
        """Called each time the worker becomes connected to a manager instance."""
