"""The worker's agent layer: Ceylon's ``Worker`` on a DEALER and a SUB socket.

On its ``Link`` (the sockets), it registers (retrying until a manager
answers), proves its SUB receives by answering the manager's probe,
heartbeats, notices a silent or restarted manager (or a SUB on which the
manager's heartbeats stopped) and registers again on fresh sockets, and
delivers direct messages and broadcasts to the Ceylon callbacks.  Other
layers attach through the ``WorkerHooks`` extension points (``use``); users
subclass ``Worker`` for Ceylon's callbacks, as in Ceylon.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from loguru import logger

from protocol import (
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
    Ready,
    Register,
    Roster,
    Welcome,
    encode,
)
from runtime.agent import AgentBase, detail_of, now_ns
from runtime.keys import curve_client
from runtime.sockets import reachable
from runtime.supervise import supervise
from worker.config import WorkerConfig
from worker.hooks import Handler, WorkerHooks
from worker.link import Link, ManagerLink
from worker.patience import Patience
from worker.session import (
    FATAL_ERRORS,
    Session,
    SubStep,
    SubWatch,
    WorkerRefused,
)

#: This host's name, as ``register`` tells the manager (``status`` and ``inspect`` show it).
HOST = socket.gethostname()


class Worker(AgentBase):
    """An agent process.  ``await worker.arun_worker(inputs)`` runs until ``stop()``.

    ``Worker(name, workspace_id, admin_peer, admin_port, role, admin_ip)`` as
    in Ceylon; any other setting of ``WorkerConfig`` by keyword, or a whole
    ``config``.
    """

    def __init__(
        self,
        name: str | None = None,
        workspace_id: str | None = None,
        admin_peer: str = "",
        admin_port: int | None = None,
        role: str = "worker",
        admin_ip: str | None = None,
        *,
        config: WorkerConfig | None = None,
        link: Link | None = None,
        clock: Callable[[], float] = time.monotonic,
        **settings: Any,
    ) -> None:
        given: dict[str, Any] = {
            k: v
            for k, v in (
                ("name", name),
                ("workspace", workspace_id),
                ("port", admin_port),
                ("host", admin_ip),
            )
            if v is not None
        }
        cfg = dataclasses.replace(config or WorkerConfig(), **given, **settings)
        super().__init__(cfg.name, role, cfg.workspace, cfg.agent_id)
        self.config = cfg
        self.admin_peer = admin_peer
        self.clock = clock
        self.interval = cfg.heartbeat_interval
        self.liveness = cfg.liveness
        self.session = Session.OFFLINE
        self.link: Link = link or ManagerLink(
            self.id,
            cfg.host,
            cfg.port,
            cfg.max_message_bytes,
            cfg.name,
            curve_client(cfg.secret_key, cfg.manager_key),
        )
        self.link.set_heartbeat(self.interval, self.liveness)
        self.hooks: list[WorkerHooks] = []
        self.manager_id = ""
        self.epoch = ""
        self.draining = False
        self.bye_reason = "stopping"
        self._heard = clock()
        self._last_register = -float("inf")
        self._last_beat = -float("inf")
        self._sub = SubWatch(clock())
        self._refused: WorkerRefused | None = None
        self.patience = Patience(cfg.name, f"{cfg.host}:{cfg.port}")
        self._drain_task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._handlers: dict[type[Message], Handler] = {
            Welcome: self._on_welcome,
            Heartbeat: self._on_heartbeat,
            Direct: self._on_direct,
            Roster: self._on_roster,
            Error: self._on_error,
            Bye: self._on_manager_bye,
        }

    def use(self, extension: WorkerHooks) -> None:
        """Attach a layer: its message handlers and its hooks (see ``worker.hooks``)."""
        self.hooks.append(extension)
        self._handlers.update(extension.message_handlers())

    @property
    def skill(self) -> int:
        return self.config.skill

    @property
    def capacity(self) -> int:
        return sum(h.capacity for h in self.hooks)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted({k for h in self.hooks for k in h.kinds}))

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
                self._user_loop(inputs),
                *(loop for hook in self.hooks for loop in hook.loops()),
            )
        finally:
            self._shutdown()
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
        return self.session == Session.CONNECTED

    def request_stop(self) -> None:
        """First call: drain (no new work; hooks finish theirs within the grace); second: stop."""
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())
        else:
            self.stopping.set()

    # ------------------------------------------------------------------ wire

    def send_nowait(self, msg: Message | bytes) -> bool:
        """Send to the manager if a connection can take it now; ``False`` otherwise."""
        return self.link.send_nowait(msg if isinstance(msg, bytes) else encode(msg))

    async def _send_app(self, msg: Message) -> None:
        if not self.connected:
            raise ConnectionError(f"{self.name} is not connected to a manager")
        await self.link.send(encode(msg), self.interval * self.liveness)

    def _shutdown(self) -> None:
        bye = encode(Bye(reason=self.bye_reason)) if self.session != Session.OFFLINE else None
        self.link.close(bye)
        self.session = Session.OFFLINE

    def handle(self, msg: Message) -> None:
        """Handle one message from the manager's DEALER (proof of life); a bug is logged."""
        self._heard = self.clock()
        handler = self._handlers.get(type(msg))
        if handler is None:
            logger.warning("{}: unexpected {} from the manager", self.name, msg.TYPE)
            return
        try:
            handler(msg)
        except Exception:
            logger.exception("{}: handler for {} failed", self.name, msg.TYPE)

    async def _dealer_loop(self) -> None:
        async for msg in self.link.from_manager():
            self.handle(msg)
            await self.wait_for_room()

    async def _sub_loop(self) -> None:
        async for msg in self.link.published():
            try:
                self.handle_published(msg)
            except Exception:
                logger.exception("{}: handling {} failed", self.name, msg.TYPE)
            await self.wait_for_room()

    async def _session_loop(self) -> None:
        """Register while offline; heartbeat while online; reconnect when the manager is silent."""
        while True:
            self.keep_session(self.clock())
            await asyncio.sleep(min(self.interval / 4, 0.1))

    def keep_session(self, now: float) -> None:
        """One step of the session: register, heartbeat, or give up on a silent manager."""
        if self.session == Session.OFFLINE:
            self.link.retry_refused(now)
            if now - self._last_register >= min(self.interval, 0.25):
                self.patience.waiting(now)
                self._register(now)
            return
        if self.link.busy:
            self._heard = now  # still working through what arrived: proof of life too
        if now - self._heard > self.interval * self.liveness:
            logger.warning(
                "{}: manager silent for {:.1f}s, reconnecting", self.name, now - self._heard
            )
            self._go_offline()
            self.link.new_dealer()
            self._renew_sub(now)  # its connection may be stalled too: never wait behind it
            return
        if self._sub_silent(now):
            return
        if now - self._last_beat >= self.interval:
            self._last_beat = now
            running = sum(h.running() for h in self.hooks)
            sent = self.send_nowait(Heartbeat(epoch=self.epoch, time=now_ns(), running=running))
            logger.trace("{}: heartbeat {}", self.name, "sent" if sent else "not sent")

    def _sub_silent(self, now: float) -> bool:
        """Renew a SUB that hears nothing; register again if that is not enough (``True``)."""
        window = self.interval * self.liveness
        step = self._sub.step(self.session, now, window, self.name, self.link.sub_endpoint)
        if step is SubStep.REGISTER:
            self._go_offline()
            self._renew_sub(now)
            return True
        if step is SubStep.RENEW:
            self._renew_sub(now)
        return False

    def _renew_sub(self, now: float) -> None:
        self.link.renew_sub()
        self._sub.renew(now)

    async def _user_loop(self, inputs: bytes) -> None:
        await self._connected.wait()
        await self._run_user(inputs)

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
                holding=[key for h in self.hooks for key in h.holding()],
                host=HOST,
                pid=os.getpid(),
            )
        )

    def _go_offline(self) -> None:
        self.session = Session.OFFLINE
        self._connected.clear()
        for agent in list(self._peers):
            self.peer_down(agent)

    async def _drain(self) -> None:
        self.draining = True
        self.send_nowait(Drain(grace=self.config.grace))
        for hook in self.hooks:
            await hook.drain()
        self.stopping.set()

    # ------------------------------------------------------------------ handlers

    def _on_welcome(self, msg: Welcome) -> None:
        if msg.version != PROTOCOL_VERSION:
            self._refuse(f"manager speaks protocol {msg.version}, this worker {PROTOCOL_VERSION}")
            return
        restarted = bool(self.epoch) and msg.epoch != self.epoch
        if self.session == Session.CONNECTED and not restarted:
            # Answers a register sent before a probe connected us (we register every 0.25 s
            # until welcomed): stay connected; the probes of the manager's new record are
            # answered with ``ready`` all the same (``_on_probe``).
            return
        self.epoch = msg.epoch
        self.manager_id = msg.manager_id
        self.interval = msg.heartbeat_interval
        self.liveness = msg.liveness
        self.link.set_heartbeat(self.interval, self.liveness)
        self.link.connect_sub(reachable(msg.pub_endpoint, self.config.host))
        self.session = Session.PROBING
        self._sub.probing(self.clock())
        if restarted:
            logger.info("{}: manager restarted (epoch {})", self.name, msg.epoch)

    def handle_published(self, msg: Message) -> None:
        """Handle one message from the manager's PUB (each one proves the SUB works)."""
        self._sub.heard = self.clock()  # a heartbeat on PUB is only that
        if isinstance(msg, Probe):
            if msg.agent_id == self.id and msg.epoch == self.epoch:
                self._on_probe()
        elif isinstance(msg, Broadcast):
            if msg.sender != self.id:
                self.deliver(msg.sender, msg.data, msg.time, msg.seq)
        elif isinstance(msg, Joined):
            self.peer_up(detail_of(msg.agent))
        elif isinstance(msg, Left):
            self.peer_down(msg.agent.id)

    def _on_probe(self) -> None:
        if self.draining:  # before ready: a new manager instance must assign us nothing
            self.send_nowait(Drain(grace=self.config.grace))
        self.send_nowait(Ready(epoch=self.epoch))  # again if connected: our ready was lost
        if self.session != Session.PROBING:
            return
        self.session = Session.CONNECTED
        self._connected.set()
        self.patience.connected()
        logger.info("{} connected to {} ({})", self.name, self.manager_id, self.epoch)
        for hook in self.hooks:
            hook.on_ready()

    def _on_heartbeat(self, msg: Heartbeat) -> None:
        if msg.epoch != self.epoch and self.session != Session.OFFLINE:
            logger.info("{}: new manager instance {}, registering again", self.name, msg.epoch)
            self._go_offline()

    def _on_direct(self, msg: Direct) -> None:
        self.deliver(msg.sender, msg.data, msg.time)

    def _on_roster(self, msg: Roster) -> None:
        for ref in msg.agents:
            self.peer_up(detail_of(ref))

    def _on_error(self, msg: Error) -> None:
        if msg.code in FATAL_ERRORS:
            self._refuse(msg.message)
        elif msg.code == "unknown_peer":
            if self.session != Session.OFFLINE:
                logger.info("{}: the manager does not know us, registering again", self.name)
                self._go_offline()
        elif msg.code == "id_taken":  # retried: the holder may be our own dead connection
            self.patience.refused(self.clock(), msg.message)
        else:
            logger.warning("{}: manager reported {}: {}", self.name, msg.code, msg.message)

    def _on_manager_bye(self, msg: Bye) -> None:
        logger.info("{}: manager said goodbye ({}); waiting for it", self.name, msg.reason)
        self._go_offline()

    def _refuse(self, why: str) -> None:
        logger.error("{}: refused by the manager: {}", self.name, why)
        self._refused = WorkerRefused(why)
        self.stopping.set()
