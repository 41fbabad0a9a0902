"""The manager's agent layer: Ceylon's ``Admin`` on a ROUTER and a PUB socket.

This module owns the manager's sockets.  It keeps membership (register →
probe on PUB → ready → connected; heartbeats; loss), routes direct messages
and re-publishes broadcasts, and turns every bad frame into a warning, a
count and, where the sender is routable, an ``Error`` reply.  The task layer
(``manager.service``) adds its message handlers and hooks on top.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import zmq
import zmq.asyncio
from loguru import logger

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
    Message,
    Probe,
    ProtocolError,
    Ready,
    Register,
    Roster,
    Welcome,
    decode,
    encode,
)
from worker.agent import Worker
from worker.base import AgentBase, now_ns, ref_of, supervise
from worker.sockets import bind, configure, send_frames

Handler = Callable[[bytes, Any], Awaitable[None]]

#: Messages handled between two commits of the journal (group commit).
RECV_BATCH = 256
#: Sends between two forced yields to the event loop.
YIELD_EVERY = 256


class Admin(AgentBase):
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
        super().__init__(name, role, workspace_id)
        self.host = host
        self.port = port
        self.pub_port = pub_port
        self.interval = heartbeat_interval
        self.liveness = liveness
        self.max_bytes = max_message_bytes
        self.clock = clock
        self.registry = Registry(clock, heartbeat_interval, liveness)
        self.epoch = uuid.uuid4().hex[:16]
        self.endpoint = ""
        self.pub_endpoint = ""
        self.counters: Counter[str] = Counter()
        self.started = clock()
        self._ctx: zmq.asyncio.Context | None = None
        self._router: zmq.asyncio.Socket | None = None
        self._pub: zmq.asyncio.Socket | None = None
        self._workers: list[Worker] = []
        self._last_beat = 0.0
        self._outbox: list[tuple[bytes, Message]] = []
        self._drained_at = clock()  # when the ROUTER was last read to the end
        self._recv_idle = False
        self._published = 0
        self._handlers: dict[type[Message], Handler] = {
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
        """Create the context and bind both sockets (synchronous, so errors surface at once)."""
        self._ctx = zmq.asyncio.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        configure(self._router, self.max_bytes)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self._pub = self._ctx.socket(zmq.PUB)
        configure(self._pub, self.max_bytes)
        self._pub.setsockopt(zmq.SNDHWM, 100_000)
        try:
            self.endpoint = bind(self._router, self.host, self.port)
            self.pub_endpoint = bind(self._pub, self.host, self.pub_port)
        except zmq.ZMQError:
            self._close_sockets()
            raise
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

    def _close_sockets(self) -> None:
        if self._router is not None:
            self._router.close(linger=200)  # let the goodbyes go out
        if self._pub is not None:
            self._pub.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
        self._router = self._pub = self._ctx = None

    # ------------------------------------------------------------------ wire

    async def send(self, ident: bytes, msg: Message) -> bool:
        """Send to one peer; ``False`` when ZeroMQ cannot route to it (it is gone)."""
        if self._router is None:
            return False
        try:
            await send_frames(self._router, [ident, encode(msg)], self.registry.window)
        except (zmq.ZMQError, TimeoutError) as exc:
            self.counters["send_failures"] += 1
            logger.debug("cannot send {} to {}: {!r}", msg.TYPE, ident[:64], exc)
            return False
        return True

    async def _publish(self, msg: Message) -> None:
        if self._pub is not None:
            await self._pub.send(encode(msg))
            self._published += 1
            if self._published % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a publishing loop must not starve heartbeats

    def post(self, ident: bytes, msg: Message) -> None:
        """Send after the next commit: for replies that promise durability (acks)."""
        self._outbox.append((ident, msg))

    async def _flush(self) -> None:
        """Commit what the handled batch changed, then send what it earned."""
        self._commit()
        outbox, self._outbox = self._outbox, []
        for ident, msg in outbox:
            await self.send(ident, msg)

    def _commit(self) -> None:
        """Hook: make the state changes of the last batch durable."""

    async def _recv_loop(self) -> None:
        """Handle whatever is waiting (up to ``RECV_BATCH``), then commit once and reply."""
        router = self._router
        assert router is not None
        while True:
            self._recv_idle = True
            frames = await router.recv_multipart()
            self._recv_idle = False
            await self._handle_frames(frames)
            for _ in range(RECV_BATCH - 1):
                try:
                    frames = await router.recv_multipart(flags=zmq.NOBLOCK)
                except zmq.Again:
                    self._drained_at = self.clock()
                    break
                await self._handle_frames(frames)
            await self._flush()
            await asyncio.sleep(0)  # let the timers run between batches

    async def _handle_frames(self, frames: list[bytes]) -> None:
        """The one place where peer input can fail; nothing here stops the loop."""
        ident = frames[0]
        if len(frames) != 2:
            self._bad(ident, f"expected 1 body frame, got {len(frames) - 1}", b"")
            return
        body = frames[1]
        try:
            msg = decode(body, self.max_bytes)
        except ProtocolError as exc:
            self._bad(ident, str(exc), body)
            await self.send(ident, Error(code=exc.code, message=str(exc)))
            return
        self.registry.touch(_text(ident))
        handler = self._handlers.get(type(msg))
        if handler is None:
            self._bad(ident, f"unexpected {msg.TYPE} message", body)
            await self.send(ident, Error(code="unexpected", message=f"{msg.TYPE} is not for me"))
            return
        self.counters[f"rx.{msg.TYPE}"] += 1
        try:
            await handler(ident, msg)
        except Exception:
            self.counters["handler_errors"] += 1
            logger.exception("handler for {} from {} failed", msg.TYPE, _text(ident))

    def _bad(self, ident: bytes, why: str, body: bytes) -> None:
        self.counters["bad_messages"] += 1
        logger.warning("bad message from {}: {} (first bytes {!r})", _text(ident), why, body[:32])

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
        if old is not None and old.state != PENDING:
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
        if msg.agent_id != _text(ident) or not msg.agent_id or msg.agent_id == self.id:
            return Error(code="identity", message="agent_id must equal the socket identity")
        if msg.capacity < 0 or msg.skill < 0:
            return Error(code="bad_message", message="skill and capacity must not be negative")
        return None

    async def _on_ready(self, ident: bytes, msg: Ready) -> None:
        rec = self.registry.get(_text(ident))
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
        if _text(ident) not in self.registry:
            await self._unknown(ident)

    async def _on_bye(self, ident: bytes, msg: Bye) -> None:
        rec = self.registry.get(_text(ident))
        if rec is not None:
            await self._drop_record(rec, f"left ({msg.reason or 'bye'})")

    async def _on_drain(self, ident: bytes, msg: Drain) -> None:
        rec = self.registry.get(_text(ident))
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
        await self.send(msg.target.encode(), msg)

    async def _on_broadcast(self, ident: bytes, msg: Broadcast) -> None:
        if not await self._is_member(ident, msg.sender):
            return
        await self._publish(msg)
        await self._deliver(msg.sender, msg.data, msg.time, msg.seq)

    async def _is_member(self, ident: bytes, sender: str) -> bool:
        rec = self.registry.get(_text(ident))
        if rec is None or rec.state == PENDING:
            await self._unknown(ident)
            return False
        if sender != rec.id:
            self._bad(ident, f"claims to be {sender!r}", b"")
            await self.send(ident, Error(code="identity", message="sender must be your own id"))
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
        if self._recv_idle:  # never peek at zmq.EVENTS: it stalls an asyncio socket
            self._drained_at = now
        for rec in self.registry.expired(self._drained_at):
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


def _text(ident: bytes) -> str:
    return ident.decode("utf-8", "backslashreplace")
