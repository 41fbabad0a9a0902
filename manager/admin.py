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

from manager.access import Access
from manager.auth import RELOAD_EVERY, CurveServer, KeyRing, is_loopback, key_dirs
from manager.config import ManagerConfig
from manager.endpoint import Endpoint, Transport
from manager.hooks import AdminHooks, Handler
from manager.membership import Membership
from manager.registry import AgentRecord, Registry
from manager.routing import Routing
from manager.transport import ZmqRouter
from protocol import (
    AgentState,
    Broadcast,
    Bye,
    Direct,
    Drain,
    Error,
    Heartbeat,
    Message,
    Probe,
    ProtocolError,
    Ready,
    Register,
    decode,
    encode,
)
from runtime.agent import YIELD_EVERY, AgentBase, PeerAgent, now_ns
from runtime.keys import load_secret
from runtime.supervise import supervise


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
            on_unreachable=lambda ident: self.membership.unreachable(ident),
            room=self.wait_for_room,
            patient=lambda ident: self.registry.by_route(ident) is not None,
            window=cfg.window,
            counters=counters,
        )
        self.counters = self.endpoint.counters
        self._sends = 0  # application sends (broadcast, send_direct), for _breathe
        self._keys_checked = clock()
        #: A worker key was revoked: the PUB is re-opened so that every subscriber
        #: authenticates again (a revoked one's open connection would go on receiving).
        self.pub_stale = False
        self.epoch = uuid.uuid4().hex[:16]
        self.started = clock()
        self.hooks: list[AdminHooks] = []
        self._workers: list[PeerAgent] = []
        self._last_beat = -float("inf")
        self._open = False
        self.membership = Membership(self)
        self.access = Access(self, self.keyring) if self.keyring is not None else None
        routing = Routing(self)
        self._handlers: dict[type[Message], Handler] = {
            Register: self.membership.on_register,
            Ready: self.membership.on_ready,
            Heartbeat: self.membership.on_heartbeat,
            Bye: self.membership.on_bye,
            Drain: self.membership.on_drain,
            Direct: routing.on_direct,
            Broadcast: routing.on_broadcast,
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
        seq = self._next_seq()
        self.endpoint.publish(Broadcast(sender=self.id, seq=seq, time=now_ns(), data=bytes(data)))
        await self.endpoint.flush()
        await self._breathe()

    async def send_direct(self, agent_id: str, data: bytes) -> None:
        """Send ``data`` to one connected agent; ``LookupError`` if it is not connected."""
        rec = self.registry.get(agent_id)
        if rec is None or not rec.announced:
            raise LookupError(f"no connected agent {agent_id!r}")
        msg = Direct(sender=self.id, target=agent_id, seq=0, time=now_ns(), data=bytes(data))
        self.endpoint.post(rec.route, msg)
        await self.endpoint.flush()
        await self._breathe()

    async def _breathe(self) -> None:
        """A send that never waits (the PUB's fast path) must not starve the heartbeats:
        a loop of ``broadcast`` calls lets the timers run every ``YIELD_EVERY`` sends."""
        self._sends += 1
        if self._sends % YIELD_EVERY == 0:
            await asyncio.sleep(0)

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
        return None if self.access is None else self.access.viewer()

    def unknown(self, ident: bytes) -> None:
        """Tell ``ident`` it is not registered (it registers again)."""
        self.membership.unknown(ident)

    def reload_keys(self) -> None:
        """Read the key directories again (SIGHUP, or a change seen by ``tick``)."""
        if self.access is not None:
            self.access.reload()

    def _dispatch(self, ident: bytes, msg: Message) -> None:
        if self.access is not None and not self.access.permitted(ident, msg):
            return
        rec = self.member(ident)
        if rec is not None:
            if rec.state == AgentState.UNREACHABLE:
                self.membership.reachable_again(ident, rec, msg)
            self.registry.touch(rec.id)  # any message is proof of life
        handler = self._handlers.get(type(msg))
        if handler is None:
            self.endpoint.bad(ident, f"unexpected {msg.TYPE} message", b"")
            self.post(ident, Error(code="unexpected", message=f"{msg.TYPE} is not for me"))
            return
        handler(ident, msg)

    def _before_ack(self) -> None:
        for hook in self.hooks:
            hook.before_ack()

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
        self.membership.check_liveness(now)
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


def _is_register(body: bytes) -> bool:
    try:
        return isinstance(decode(body), Register)
    except ProtocolError:
        return False
