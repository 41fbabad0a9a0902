"""The manager's agent layer: Ceylon's ``Admin`` on a ROUTER and a PUB socket.

It keeps membership (register → probe on PUB → ready → connected; heartbeats
on both sockets; unreachable, then lost), routes direct messages and
re-publishes broadcasts.  The sockets are a
component (``Endpoint`` over a ``Transport``); other layers attach through the
``AdminHooks`` extension points (``use``), never by subclassing.  Users
subclass ``Admin`` for Ceylon's callbacks (``on_message`` ...), as in Ceylon.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger

from manager.auth import (
    RELOAD_EVERY,
    WORKER,
    CurveServer,
    KeyRing,
    Verdict,
    forbidden_text,
    is_loopback,
    key_dirs,
)
from manager.config import ManagerConfig
from manager.endpoint import Endpoint, Transport
from manager.hooks import AdminHooks, Handler
from manager.registry import AgentRecord, Registry
from manager.transport import ZmqRouter
from protocol import (
    MAX_KINDS,
    MAX_NAME,
    PROTOCOL_VERSION,
    AgentState,
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
from runtime.agent import AgentBase, PeerAgent, now_ns, ref_of
from runtime.keys import load_secret
from runtime.supervise import supervise
from runtime.throttle import Throttle

#: What a registration may claim: the skill scale, and tasks at once.
MAX_SKILL = 10
MAX_CAPACITY = 10_000
#: Largest broadcast sequence number accepted (exact in a float64, as in JavaScript).
MAX_SEQ = 2**53


class Admin(AgentBase):
    """The manager agent.  ``await admin.arun_admin(inputs, workers)`` serves until ``stop()``.

    ``Admin(name, port)`` as in Ceylon; any other setting of ``ManagerConfig``
    by keyword, or a whole ``config``.
    """

    def __init__(
        self,
        name: str | None = None,
        port: int | None = None,
        *,
        config: ManagerConfig | None = None,
        role: str = "admin",
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        **settings: Any,
    ) -> None:
        given: dict[str, Any] = {k: v for k, v in (("name", name), ("port", port)) if v is not None}
        cfg = dataclasses.replace(config or ManagerConfig(), **given, **settings)
        AgentBase.__init__(self, cfg.name, role, cfg.workspace)
        self.config = cfg
        self.clock = clock
        self.registry = Registry(
            clock, cfg.heartbeat_interval, cfg.liveness, grace=cfg.unreachable_grace
        )
        counters: Counter[str] = Counter()
        #: The CURVE allow-lists (``None``: CURVE off, everyone is one tenant).
        self.keyring: KeyRing | None = None
        curve: CurveServer | None = None
        if cfg.secret_key:
            self.keyring = KeyRing(key_dirs(cfg))
            self.keyring.load()
            if transport is None:
                curve = CurveServer(load_secret(cfg.secret_key), self.keyring, counters)
        self.transport: Transport = transport or ZmqRouter(
            host=cfg.bind,
            port=cfg.port,
            pub_port=cfg.pub_port,
            max_bytes=cfg.max_message_bytes,
            curve=curve,
        )
        self.endpoint = Endpoint(
            self.transport,
            self._dispatch,
            max_bytes=cfg.max_message_bytes,
            clock=clock,
            before_ack=self._before_ack,
            on_unreachable=self._unreachable,
            room=self.wait_for_room,
            patient=lambda ident: self.registry.by_route(ident) is not None,
            window=cfg.window,
            counters=counters,
        )
        self.counters = self.endpoint.counters
        self._keys_checked = clock()
        #: A worker key was revoked: the PUB is re-opened so that every subscriber
        #: authenticates again (a revoked one's open connection would go on receiving).
        self.pub_stale = False
        self._refusals = Throttle("refused registrations")
        self.epoch = uuid.uuid4().hex[:16]
        self.started = clock()
        self.hooks: list[AdminHooks] = []
        self._workers: list[PeerAgent] = []
        self._last_beat = -float("inf")
        self._open = False
        self._handlers: dict[type[Message], Handler] = {
            Register: self._on_register,
            Ready: self._on_ready,
            Heartbeat: self._on_heartbeat,
            Bye: self._on_bye,
            Drain: self._on_drain,
            Direct: self._on_direct,
            Broadcast: self._on_broadcast,
        }

    def use(self, extension: AdminHooks) -> None:
        """Attach a layer: its message handlers and its hooks (see ``manager.hooks``)."""
        self.hooks.append(extension)
        self._handlers.update(extension.message_handlers())

    # ------------------------------------------------------------------ Ceylon API

    async def arun_admin(self, inputs: bytes = b"", workers: Sequence[PeerAgent] = ()) -> None:
        """Bind, run ``run(inputs)`` and the in-process ``workers``; return after ``stop()``."""
        self._workers = list(workers)
        if not self._open:
            self.open()
        try:
            await supervise(
                self.stopping,
                self.endpoint.serve(),
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
        self.endpoint.publish(
            Broadcast(sender=self.id, seq=self._next_seq(), time=now_ns(), data=bytes(data))
        )
        await self.endpoint.flush()

    async def send_direct(self, agent_id: str, data: bytes) -> None:
        """Send ``data`` to one connected agent; ``LookupError`` if it is not connected."""
        rec = self.registry.get(agent_id)
        if rec is None or not rec.announced:
            raise LookupError(f"no connected agent {agent_id!r}")
        msg = Direct(sender=self.id, target=agent_id, seq=0, time=now_ns(), data=bytes(data))
        self.endpoint.post(rec.route, msg)
        await self.endpoint.flush()

    # ------------------------------------------------------------------ lifecycle

    @property
    def address(self) -> str:
        """The ROUTER endpoint actually bound (``tcp://host:port``)."""
        return self.transport.endpoint

    @property
    def pub_endpoint(self) -> str:
        return self.transport.pub_endpoint

    def open(self) -> None:
        """Bind both sockets (synchronous, so errors surface at once)."""
        self.transport.open()
        self._open = True
        self.started = self.clock()
        logger.info(
            "{} listening on {} (broadcasts on {}), epoch {}",
            self.name,
            self.address,
            self.pub_endpoint,
            self.epoch,
        )
        if self.keyring is not None and not self.keyring.roles:
            logger.warning("CURVE is on but no key is listed: nobody can connect")
        if self.keyring is None and not is_loopback(self.config.bind):
            logger.warning(
                "listening on {} without CURVE: anyone who can reach it can submit, read every "
                "task and register as a worker (see SECURITY.md: --secret-key)",
                self.config.bind,
            )

    async def close(self, goodbye_wait: float | None = None) -> None:
        """Commit and send what is pending, say goodbye to every agent, close the sockets.

        After the goodbyes the sockets stay open until every agent told has
        registered again (proof that it read the ``bye``: a DEALER with
        ``ZMQ_IMMEDIATE`` drops what it has not read when the connection
        goes) or ``goodbye_wait`` seconds (default: a liveness window, at
        most 1 s).  Nothing that arrives meanwhile is answered.
        """
        if not self._open:
            return
        await self.endpoint.flush()
        told = {rec.route for rec in self.registry}
        bye = encode(Bye(reason="manager stopping"), self.config.max_message_bytes)
        for ident in list(told):
            self.endpoint.post(ident, bye, on_fail=functools.partial(told.discard, ident))
        await self.endpoint.flush()
        wait = min(self.config.window, 1.0) if goodbye_wait is None else goodbye_wait
        await self._await_registers(told, wait)
        for hook in self.hooks:
            hook.on_close()
        self.transport.close()
        self._open = False

    async def _await_registers(self, idents: set[bytes], timeout: float) -> None:
        if not idents or timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while idents:
                    batch, _ = await self.transport.recv_batch(256)
                    for frames in batch:
                        if len(frames) == 2 and frames[0] in idents and _is_register(frames[1]):
                            idents.discard(frames[0])

    def post(self, ident: bytes, msg: Message | bytes) -> None:
        """Send to one peer after the current batch is committed."""
        self.endpoint.post(ident, msg)

    # ------------------------------------------------------------------ dispatch

    def member(self, ident: bytes) -> AgentRecord | None:
        """The agent registered on connection ``ident``, if this message's key is its key."""
        rec = self.registry.by_route(ident)
        if rec is not None and rec.key != self.endpoint.peer_key:
            return None
        return rec

    def viewer(self) -> str | None:
        """Whose tasks the current message may see: ``None`` for all (no CURVE, operator
        keys), else the sender's key (a client sees its own tasks only)."""
        ring, key = self.keyring, self.endpoint.peer_key
        if ring is None or ring.sees_all(key):
            return None
        return key

    def _dispatch(self, ident: bytes, msg: Message) -> None:
        if self.keyring is not None and not self._permitted(ident, msg):
            return
        rec = self.member(ident)
        if rec is not None:
            if rec.state == AgentState.UNREACHABLE:
                self._reachable_again(ident, rec, msg)
            self.registry.touch(rec.id)  # any message is proof of life
        handler = self._handlers.get(type(msg))
        if handler is None:
            self.endpoint.bad(ident, f"unexpected {msg.TYPE} message", b"")
            self.post(ident, Error(code="unexpected", message=f"{msg.TYPE} is not for me"))
            return
        handler(ident, msg)

    def _permitted(self, ident: bytes, msg: Message) -> bool:
        """May this message's key send it?  A removed key gets no answer; a wrong role does."""
        assert self.keyring is not None
        key = self.endpoint.peer_key
        verdict = self.keyring.check(key, msg)
        if verdict is Verdict.ALLOWED:
            return True
        if verdict is Verdict.REVOKED:
            self.counters["auth_revoked"] += 1
            if self._refusals.allow(key):
                logger.warning("dropped a {} from key {}: no longer listed", msg.TYPE, key)
            return False
        self.counters["forbidden"] += 1
        if self._refusals.allow(key):
            logger.warning("refused {} from key {}: wrong role", msg.TYPE, self.keyring.name(key))
        self.post(ident, Error(code="forbidden", message=forbidden_text(msg), req=_req(msg)))
        return False

    def _before_ack(self) -> None:
        for hook in self.hooks:
            hook.before_ack()

    def _unreachable(self, ident: bytes) -> None:
        """A message to ``ident`` could not be sent: unreachable; it must register again."""
        rec = self.registry.by_route(ident)
        if rec is None:
            return
        rec.missed = True  # its connection is closed, not stalled: no grace
        if self.registry.set_unreachable(rec):
            logger.warning(
                "{} unreachable: its connection is closed; it keeps its {} task(s) until it "
                "has been silent for {:g}s",
                rec.name,
                len(rec.running),
                self.registry.window,
            )

    def _reachable_again(self, ident: bytes, rec: AgentRecord, msg: Message) -> None:
        """Heard from ``rec`` again; if a message to it was lost, it must register again."""
        logger.info(
            "{} reachable again after {:.1f}s of silence", rec.name, self.clock() - rec.last_seen
        )
        if rec.missed and not isinstance(msg, Register):
            rec.missed = False
            why = "a message to you could not be sent: register again, with what you hold"
            self.post(ident, Error(code="unknown_peer", message=why))

    # ------------------------------------------------------------------ membership

    def _on_register(self, ident: bytes, msg: Register) -> None:
        problem = self._refusal(ident, msg)
        if problem is not None:
            self.counters[f"registrations_refused.{problem.code}"] += 1
            if self._refusals.allow(ident):
                logger.warning("refused registration of {}: {}", msg.agent_id[:64], problem.message)
            self.post(ident, problem)
            return
        rec, old = self.registry.add(
            msg.agent_id,
            name=msg.name,
            role=msg.role,
            skill=msg.skill,
            capacity=msg.capacity,
            kinds=frozenset(msg.kinds),
            route=ident,
            key=self.endpoint.peer_key,
        )
        for hook in self.hooks:
            hook.on_joined(rec, old, msg)
        if old is not None:  # what the old record still holds is released, pending or not
            self._drop_record(old, "re-registered")
        logger.debug("{} ({}) registered, probing its SUB", msg.name, msg.agent_id)
        self.post(
            ident,
            Welcome(
                version=PROTOCOL_VERSION,
                manager_id=self.id,
                manager_name=self.name,
                epoch=self.epoch,
                pub_endpoint=self.pub_endpoint,
                heartbeat_interval=self.config.heartbeat_interval,
                liveness=self.config.liveness,
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
                message=f"workspace {msg.workspace_id[:64]!r} is not served here "
                f"(this manager serves {self.workspace_id!r})",
            )
        if not msg.agent_id or msg.agent_id == self.id:
            return Error(code="identity", message="agent_id must be set and not the manager's")
        if not (0 <= msg.skill <= MAX_SKILL and 0 <= msg.capacity <= MAX_CAPACITY):
            return Error(
                code="registration",
                message=f"skill must be 0-{MAX_SKILL} and capacity 0-{MAX_CAPACITY}",
            )
        texts = (msg.agent_id, msg.name, msg.role, *msg.kinds)
        if len(msg.kinds) > MAX_KINDS or any(len(t) > MAX_NAME for t in texts):
            return Error(
                code="registration",
                message=f"ids, names, roles and kinds are at most {MAX_NAME} characters, "
                f"kinds at most {MAX_KINDS}",
            )
        return self._identity_refusal(ident, msg.agent_id)

    def _identity_refusal(self, ident: bytes, agent_id: str) -> Error | None:
        """One connection, one agent; a live agent's id is its own (and its key's)."""
        mine = self.registry.by_route(ident)
        if mine is not None and mine.id != agent_id:
            return Error(
                code="identity",
                message=f"this connection is registered as {mine.id[:64]!r}; "
                "use a new connection for another agent",
            )
        holder = self.registry.get(agent_id)
        key = self.endpoint.peer_key
        if holder is None or (holder.route == ident and holder.key == key):
            return None
        if holder.key != key:
            why = "is bound to another key"
        elif holder.state == AgentState.UNREACHABLE:
            return None  # silent, or its connection closed: the same agent on a new connection
        else:  # is the holder still there?  If not, this heartbeat fails: unreachable
            self.post(holder.route, Heartbeat(epoch=self.epoch, time=now_ns()))
            why = "is held by a live worker on another connection (a second process with this id?)"
        return Error(code="id_taken", message=f"agent id {agent_id[:64]!r} {why}")

    def _on_ready(self, ident: bytes, msg: Ready) -> None:
        rec = self.member(ident)
        if rec is None or msg.epoch != self.epoch:
            self.unknown(ident)
            return
        if rec.state != AgentState.PENDING:
            return
        rec.state = AgentState.DRAINING if rec.drain_requested else AgentState.CONNECTED
        logger.info(
            "{} connected ({}, skill {}, capacity {})", rec.name, rec.role, rec.skill, rec.capacity
        )
        self.endpoint.publish(Joined(agent=ref_of(rec.detail)))
        others = [ref_of(r.detail) for r in self.registry.connected() if r.id != rec.id]
        self.post(ident, Roster(agents=[ref_of(self.details()), *others]))
        self.peer_up(rec.detail)
        for hook in self.hooks:
            hook.on_ready(rec)

    def _on_heartbeat(self, ident: bytes, msg: Heartbeat) -> None:
        if self.member(ident) is None:
            self.unknown(ident)

    def _on_bye(self, ident: bytes, msg: Bye) -> None:
        rec = self.member(ident)
        if rec is not None:
            self._drop_record(rec, f"left ({msg.reason[:200] or 'bye'})")

    def _on_drain(self, ident: bytes, msg: Drain) -> None:
        rec = self.member(ident)
        if rec is None:
            self.unknown(ident)
        elif rec.state == AgentState.PENDING:  # sent before its ready: draining once ready
            rec.drain_requested = True
        elif rec.state == AgentState.CONNECTED:
            rec.state = AgentState.DRAINING
            logger.info("{} is draining: {} task(s) in flight", rec.name, len(rec.running))

    def unknown(self, ident: bytes) -> None:
        self.counters["unknown_peer"] += 1
        self.post(ident, Error(code="unknown_peer", message="not registered: register first"))

    def _drop_record(self, rec: AgentRecord, reason: str) -> None:
        if self.registry.get(rec.id) is rec:
            self.registry.remove(rec.id)
        level = "INFO" if reason.startswith(("left", "re-registered")) else "WARNING"
        logger.log(level, "{} disconnected: {}", rec.name, reason)
        if rec.announced:
            self.endpoint.publish(Left(agent=ref_of(rec.detail), reason=reason))
            self.peer_down(rec.id)
        for hook in self.hooks:
            hook.on_lost(rec, reason)

    # ------------------------------------------------------------------ routing

    def _on_direct(self, ident: bytes, msg: Direct) -> None:
        if not self._is_member(ident, msg.sender):
            return
        if msg.target == self.id:
            self.deliver(msg.sender, msg.data, msg.time)
            return
        target = self.registry.get(msg.target)
        if target is None or not target.announced:
            self.post(
                ident,
                Error(code="unknown_target", message=f"no connected agent {msg.target[:64]!r}"),
            )
            return

        def unreachable() -> None:
            why = f"{msg.target[:64]!r} is unreachable"
            self.post(ident, Error(code="unknown_target", message=why))

        self.endpoint.post(target.route, msg, on_fail=unreachable)

    def _on_broadcast(self, ident: bytes, msg: Broadcast) -> None:
        if not self._is_member(ident, msg.sender):
            return
        if not 0 <= msg.seq <= MAX_SEQ:  # gap counting adds up what peers claim: bound it
            self.endpoint.bad(ident, f"broadcast seq {msg.seq} out of range", b"")
            why = f"broadcast.seq must be 0-{MAX_SEQ}"
            self.post(ident, Error(code="bad_message", message=why))
            return
        self.endpoint.publish(msg)
        self.deliver(msg.sender, msg.data, msg.time, msg.seq)

    def _is_member(self, ident: bytes, sender: str) -> bool:
        rec = self.member(ident)
        if rec is None or rec.state == AgentState.PENDING:
            self.unknown(ident)
            return False
        if sender != rec.id:
            self.endpoint.bad(ident, f"claims to be {sender[:64]!r}", b"")
            self.post(ident, Error(code="spoofed_sender", message="sender must be your own id"))
            return False
        return True

    # ------------------------------------------------------------------ timers

    async def _tick_loop(self) -> None:
        period = min(self.config.heartbeat_interval / 4, 0.1)
        while True:
            self.tick()
            await self.endpoint.flush()
            if self.pub_stale:
                self.pub_stale = not await self.transport.renew_pub()  # retried if it failed
            await asyncio.sleep(period)

    def tick(self) -> None:
        """Expire silent agents, probe pending ones, heartbeat, then the hooks' ``on_tick``."""
        now = self.clock()
        self._check_liveness(now)
        for rec in self.registry.pending():
            self.endpoint.publish(Probe(agent_id=rec.id, epoch=self.epoch))
        if now - self._last_beat >= self.config.heartbeat_interval:
            self._last_beat = now
            beat = encode(Heartbeat(epoch=self.epoch, time=now_ns()), self.config.max_message_bytes)
            self.endpoint.publish(beat)  # proves every SUB's connection alive
            for rec in self.registry:
                self.post(rec.route, beat)
        if self.keyring is not None and now - self._keys_checked >= RELOAD_EVERY:
            self._keys_checked = now
            if self.keyring.changed():
                self.reload_keys()
        self.endpoint.summarise()
        for hook in self.hooks:
            hook.on_tick(now)

    def _check_liveness(self, now: float) -> None:
        """Silent for the window: unreachable; for the window and the grace: lost."""
        heard = self.endpoint.heard_until()
        for rec in self.registry.expired(heard):
            self._drop_record(rec, f"lost: silent for {now - rec.last_seen:.1f}s")
        for rec in self.registry.mark_unreachable(heard):
            logger.warning(
                "{} unreachable: silent for {:.1f}s; it keeps its {} task(s) for {:g}s more",
                rec.name,
                now - rec.last_seen,
                len(rec.running),
                self.registry.grace,
            )

    def reload_keys(self) -> None:
        """Read the key directories again (SIGHUP, or a change seen by ``tick``).

        Agents registered with a key that is no longer listed as a worker's are
        dropped (their tasks go to others); messages from removed keys are
        dropped from now on.
        """
        if self.keyring is None:
            return
        lost = self.keyring.reload()
        if not lost:
            return
        self.counters["keys_revoked"] += len(lost)
        for rec in self.registry:
            if WORKER in lost.get(rec.key, ()):
                self._drop_record(rec, "lost: key revoked")
        if any(WORKER in roles for roles in lost.values()):
            self.pub_stale = True  # its open SUB connections must go: the tick loop renews
        for hook in self.hooks:
            hook.on_revoked(set(lost))


def _req(msg: Message) -> int:
    req = getattr(msg, "req", 0)
    return req if isinstance(req, int) else 0


def _is_register(body: bytes) -> bool:
    try:
        return isinstance(decode(body), Register)
    except ProtocolError:
        return False
