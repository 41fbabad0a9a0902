"""The manager's agent layer: Ceylon's ``Admin`` on a ROUTER and a PUB socket.

On the manager's ``Endpoint`` (its sockets), it keeps membership (register →
probe on PUB → ready → connected; heartbeats; loss), routes direct messages
and re-publishes broadcasts.  The task layer
(``manager.service``) adds its message handlers and hooks on top.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence

from loguru import logger

from manager.endpoint import Endpoint, peer_name
from manager.registry import CONNECTED, DRAINING, PENDING, AgentRecord, Registry
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
    Drain,
    Error,
    Heartbeat,
    Joined,
    Left,
    Probe,
    Ready,
    Register,
    Roster,
    Welcome,
)
from worker.agent import Worker
from worker.base import AgentBase, now_ns, ref_of, supervise


class Admin(Endpoint, AgentBase):
    """The manager agent.  ``await admin.arun_admin(inputs, workers)`` serves until ``stop()``."""

    def __init__(
        self,
        name: str = "admin",
        port: int = DEFAULT_PORT,
        *,
        host: str = "127.0.0.1",
        role: str = "admin",
        workspace_id: str = DEFAULT_WORKSPACE_ID,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        liveness: int = LIVENESS,
        pub_port: int = 0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        AgentBase.__init__(self, name, role, workspace_id)
        self.interval = heartbeat_interval
        self.liveness = liveness
        self.registry = Registry(clock, heartbeat_interval, liveness)
        Endpoint.__init__(
            self,
            host=host,
            port=port,
            pub_port=pub_port,
            max_message_bytes=max_message_bytes,
            send_timeout=self.registry.window,
            clock=clock,
        )
        self.epoch = uuid.uuid4().hex[:16]
        self.started = clock()
        self._workers: list[Worker] = []
        self._last_beat = 0.0
        self._handlers = {
            Register: self._on_register,
            Ready: self._on_ready,
            Heartbeat: self._on_heartbeat,
            Bye: self._on_bye,
            Drain: self._on_drain,
            Direct: self._on_direct,
            Broadcast: self._on_broadcast,
        }

    # ------------------------------------------------------------------ Ceylon API

    async def arun_admin(self, inputs: bytes = b"", workers: Sequence[Worker] = ()) -> None:
        """Bind, run ``run(inputs)`` and the in-process ``workers``; return after ``stop()``."""
        self._workers = list(workers)
        if self._router is None:
            self.open()
        try:
            await supervise(
                self.stopping,
                self._recv_loop(),
                self._tick_loop(),
                self._dispatch_loop(),
                self._run_user(inputs),
                *(w.arun_worker(inputs) for w in self._workers),
            )
        finally:
            await self.close()

    async def stop(self) -> None:
        for worker in self._workers:
            await worker.stop()
        await super().stop()

    async def broadcast(self, data: bytes) -> None:
        """Send ``data`` to every connected agent (they get it in ``on_message``)."""
        msg = Broadcast(sender=self.id, seq=self._next_seq(), time=now_ns(), data=bytes(data))
        await self._publish(msg)

    async def send_direct(self, agent_id: str, data: bytes) -> None:
        """Send ``data`` to one connected agent; ``LookupError`` if it is not connected."""
        rec = self.registry.get(agent_id)
        if rec is None or rec.state == PENDING:
            raise LookupError(f"no connected agent {agent_id!r}")
        msg = Direct(sender=self.id, target=agent_id, seq=0, time=now_ns(), data=bytes(data))
        await self.send(agent_id.encode(), msg)

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Bind both sockets (synchronous, so errors surface at once)."""
        self.bind_sockets()
        self.started = self.clock()
        logger.info(
            "{} listening on {} (broadcasts on {}), epoch {}",
            self.name,
            self.endpoint,
            self.pub_endpoint,
            self.epoch,
        )

    async def close(self) -> None:
        await self._flush()
        for rec in self.registry:
            await self.send(rec.id.encode(), Bye(reason="manager stopping"))
        self._close_sockets()

    def _heard_from(self, ident: bytes) -> None:
        self.registry.touch(peer_name(ident))

    # ------------------------------------------------------------------ membership

    async def _on_register(self, ident: bytes, msg: Register) -> None:
        problem = self._refusal(ident, msg)
        if problem is not None:
            logger.warning("refused registration of {}: {}", msg.agent_id, problem.message)
            await self.send(ident, problem)
            return
        rec, old = self.registry.add(
            msg.agent_id,
            name=msg.name,
            role=msg.role,
            skill=msg.skill,
            capacity=msg.capacity,
            kinds=frozenset(msg.kinds),
        )
        await self._agent_registered(rec, old, msg)
        if old is not None:  # what the old record still holds is released, pending or not
            await self._drop_record(old, "re-registered")
        logger.debug("{} ({}) registered, probing its SUB", msg.name, msg.agent_id)
        await self.send(
            ident,
            Welcome(
                version=PROTOCOL_VERSION,
                manager_id=self.id,
                manager_name=self.name,
                epoch=self.epoch,
                pub_endpoint=self.pub_endpoint,
                heartbeat_interval=self.interval,
                liveness=self.liveness,
            ),
        )

    def _refusal(self, ident: bytes, msg: Register) -> Error | None:
        if msg.version != PROTOCOL_VERSION:
            return Error(
                code="version",
                message=f"protocol version {msg.version} is not supported; "
                f"this manager speaks version {PROTOCOL_VERSION}",
            )
        if msg.workspace_id != self.workspace_id:
            return Error(
                code="workspace",
                message=f"workspace {msg.workspace_id!r} is not served here "
                f"(this manager serves {self.workspace_id!r})",
            )
        if msg.agent_id != peer_name(ident) or not msg.agent_id or msg.agent_id == self.id:
            return Error(code="identity", message="agent_id must equal the socket identity")
        if msg.capacity < 0 or msg.skill < 0:
            return Error(code="registration", message="skill and capacity must not be negative")
        return None

    async def _on_ready(self, ident: bytes, msg: Ready) -> None:
        rec = self.registry.get(peer_name(ident))
        if rec is None or msg.epoch != self.epoch:
            await self._unknown(ident)
            return
        if rec.state != PENDING:
            return
        rec.state = CONNECTED
        logger.info(
            "{} connected ({}, skill {}, capacity {})", rec.name, rec.role, rec.skill, rec.capacity
        )
        await self._publish(Joined(agent=ref_of(rec.detail)))
        others = [ref_of(r.detail) for r in self.registry.connected() if r.id != rec.id]
        await self.send(ident, Roster(agents=[ref_of(self.details()), *others]))
        await self._peer_up(rec.detail)
        await self._agent_connected(rec)

    async def _on_heartbeat(self, ident: bytes, msg: Heartbeat) -> None:
        if peer_name(ident) not in self.registry:
            await self._unknown(ident)

    async def _on_bye(self, ident: bytes, msg: Bye) -> None:
        rec = self.registry.get(peer_name(ident))
        if rec is not None:
            await self._drop_record(rec, f"left ({msg.reason or 'bye'})")

    async def _on_drain(self, ident: bytes, msg: Drain) -> None:
        rec = self.registry.get(peer_name(ident))
        if rec is None:
            await self._unknown(ident)
        elif rec.state == CONNECTED:
            rec.state = DRAINING
            logger.info("{} is draining: {} task(s) in flight", rec.name, len(rec.running))

    async def _unknown(self, ident: bytes) -> None:
        self.counters["unknown_peer"] += 1
        await self.send(ident, Error(code="unknown_peer", message="not registered: register first"))

    async def _drop_record(self, rec: AgentRecord, reason: str) -> None:
        if self.registry.get(rec.id) is rec:
            self.registry.remove(rec.id)
        level = "INFO" if reason.startswith(("left", "re-registered")) else "WARNING"
        logger.log(level, "{} disconnected: {}", rec.name, reason)
        if rec.state != PENDING:
            await self._publish(Left(agent=ref_of(rec.detail), reason=reason))
            await self._peer_down(rec.id)
        await self._agent_lost(rec, reason)

    # ------------------------------------------------------------------ routing

    async def _on_direct(self, ident: bytes, msg: Direct) -> None:
        if not await self._is_member(ident, msg.sender):
            return
        if msg.target == self.id:
            await self._deliver(msg.sender, msg.data, msg.time)
            return
        target = self.registry.get(msg.target)
        if target is None or target.state == PENDING:
            await self.send(
                ident, Error(code="unknown_target", message=f"no connected agent {msg.target!r}")
            )
            return
        if not await self.send(msg.target.encode(), msg):
            await self.send(
                ident, Error(code="unknown_target", message=f"{msg.target!r} is unreachable")
            )

    async def _on_broadcast(self, ident: bytes, msg: Broadcast) -> None:
        if not await self._is_member(ident, msg.sender):
            return
        await self._publish(msg)
        await self._deliver(msg.sender, msg.data, msg.time, msg.seq)

    async def _is_member(self, ident: bytes, sender: str) -> bool:
        rec = self.registry.get(peer_name(ident))
        if rec is None or rec.state == PENDING:
            await self._unknown(ident)
            return False
        if sender != rec.id:
            self._bad(ident, f"claims to be {sender!r}", b"")
            await self.send(
                ident, Error(code="spoofed_sender", message="sender must be your own id")
            )
            return False
        return True

    # ------------------------------------------------------------------ timers

    async def _tick_loop(self) -> None:
        period = min(self.interval / 4, 0.1)
        while True:
            await self._tick()
            await asyncio.sleep(period)

    async def _tick(self) -> None:
        now = self.clock()
        for rec in self.registry.expired(self.heard_until()):
            await self._drop_record(rec, f"lost: silent for {now - rec.last_seen:.1f}s")
        for rec in self.registry.pending():
            await self._publish(Probe(agent_id=rec.id, epoch=self.epoch))
        if now - self._last_beat >= self.interval:
            self._last_beat = now
            beat = Heartbeat(epoch=self.epoch, time=now_ns())
            for rec in self.registry:
                if not await self.send(rec.id.encode(), beat):
                    await self._drop_record(rec, "lost: unreachable")
        await self._tick_tasks(now)
        await self._flush()

    # ------------------------------------------------------------------ task-layer hooks

    async def _agent_registered(
        self, rec: AgentRecord, old: AgentRecord | None, msg: Register
    ) -> None:
        """A (re-)registration was accepted."""

    async def _agent_connected(self, rec: AgentRecord) -> None:
        """``rec`` became connected."""

    async def _agent_lost(self, rec: AgentRecord, reason: str) -> None:
        """``rec`` left, was lost, or was replaced by a re-registration."""

    async def _tick_tasks(self, now: float) -> None:
        """Called every tick with the clock's time."""
