"""Who is in: registration, the probe's ``ready``, heartbeats, goodbyes, loss.

The ``Admin``'s membership rules as a component it owns: register (checked:
version, workspace, bounds, identity) -> welcome -> probe on PUB -> ready ->
connected; silent for the window -> unreachable (keeps its tasks); silent for
the grace too, or ``bye`` -> dropped, and the hooks' ``on_lost``.  Handlers
are plain functions that post replies through the admin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from manager.registry import AgentRecord
from protocol import (
    MAX_KINDS,
    MAX_NAME,
    PROTOCOL_VERSION,
    AgentState,
    Bye,
    Drain,
    Error,
    Heartbeat,
    Joined,
    Left,
    Message,
    Ready,
    Register,
    Roster,
    Welcome,
)
from runtime.agent import now_ns, ref_of
from runtime.throttle import Throttle

if TYPE_CHECKING:
    from manager.admin import Admin

#: What a registration may claim: the skill scale, and tasks at once.
MAX_SKILL = 10
MAX_CAPACITY = 10_000


class Membership:
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self._refusals = Throttle("refused registrations")

    # ------------------------------------------------------------------ joining

    def on_register(self, ident: bytes, msg: Register) -> None:
        admin = self.admin
        problem = self._refusal(ident, msg)
        if problem is not None:
            admin.counters[f"registrations_refused.{problem.code}"] += 1
            if self._refusals.allow(ident):
                logger.warning("refused registration of {}: {}", msg.agent_id[:64], problem.message)
            admin.post(ident, problem)
            return
        rec, old = admin.registry.add(
            msg.agent_id,
            name=msg.name,
            role=msg.role,
            skill=msg.skill,
            capacity=msg.capacity,
            kinds=frozenset(msg.kinds),
            route=ident,
            key=admin.endpoint.peer_key,
        )
        for hook in admin.hooks:
            hook.on_joined(rec, old, msg)
        if old is not None:  # what the old record still holds is released, pending or not
            self.drop(old, "re-registered")
        logger.debug("{} ({}) registered, probing its SUB", msg.name, msg.agent_id, worker=msg.name)
        admin.post(
            ident,
            Welcome(
                version=PROTOCOL_VERSION,
                manager_id=admin.id,
                manager_name=admin.name,
                epoch=admin.epoch,
                pub_endpoint=admin.pub_endpoint,
                heartbeat_interval=admin.config.heartbeat_interval,
                liveness=admin.config.liveness,
            ),
        )

    def _refusal(self, ident: bytes, msg: Register) -> Error | None:
        admin = self.admin
        if msg.version != PROTOCOL_VERSION:
            return Error(
                code="version",
                message=f"protocol version {msg.version} is not supported; "
                f"this manager speaks version {PROTOCOL_VERSION}",
            )
        if msg.workspace_id != admin.workspace_id:
            return Error(
                code="workspace",
                message=f"workspace {msg.workspace_id[:64]!r} is not served here "
                f"(this manager serves {admin.workspace_id!r})",
            )
        if not msg.agent_id or msg.agent_id == admin.id:
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
        admin = self.admin
        mine = admin.registry.by_route(ident)
        if mine is not None and mine.id != agent_id:
            return Error(
                code="identity",
                message=f"this connection is registered as {mine.id[:64]!r}; "
                "use a new connection for another agent",
            )
        holder = admin.registry.get(agent_id)
        key = admin.endpoint.peer_key
        if holder is None or (holder.route == ident and holder.key == key):
            return None
        if holder.key != key:
            why = "is bound to another key"
        elif holder.state == AgentState.UNREACHABLE:
            return None  # silent, or its connection closed: the same agent on a new connection
        else:  # is the holder still there?  If not, this heartbeat fails: unreachable
            admin.post(holder.route, Heartbeat(epoch=admin.epoch, time=now_ns()))
            why = "is held by a live worker on another connection (a second process with this id?)"
        return Error(code="id_taken", message=f"agent id {agent_id[:64]!r} {why}")

    def on_ready(self, ident: bytes, msg: Ready) -> None:
        admin = self.admin
        rec = admin.member(ident)
        if rec is None or msg.epoch != admin.epoch:
            self.unknown(ident)
            return
        if rec.state != AgentState.PENDING:
            return
        rec.state = AgentState.DRAINING if rec.drain_requested else AgentState.CONNECTED
        logger.info(
            "{} connected ({}, skill {}, capacity {})",
            rec.name,
            rec.role,
            rec.skill,
            rec.capacity,
            worker=rec.name,
        )
        admin.endpoint.publish(Joined(agent=ref_of(rec.detail)))
        others = [ref_of(r.detail) for r in admin.registry.connected() if r.id != rec.id]
        admin.post(ident, Roster(agents=[ref_of(admin.details()), *others]))
        admin.peer_up(rec.detail)
        for hook in admin.hooks:
            hook.on_ready(rec)

    # ------------------------------------------------------------------ staying

    def on_heartbeat(self, ident: bytes, msg: Heartbeat) -> None:
        if self.admin.member(ident) is None:
            self.unknown(ident)

    def on_drain(self, ident: bytes, msg: Drain) -> None:
        rec = self.admin.member(ident)
        if rec is None:
            self.unknown(ident)
        elif rec.state == AgentState.PENDING:  # sent before its ready: draining once ready
            rec.drain_requested = True
        elif rec.state == AgentState.CONNECTED:
            rec.state = AgentState.DRAINING
            logger.info(
                "{} is draining: {} task(s) in flight", rec.name, len(rec.running), worker=rec.name
            )

    def unknown(self, ident: bytes) -> None:
        self.admin.counters["unknown_peer"] += 1
        self.admin.post(ident, Error(code="unknown_peer", message="not registered: register first"))

    def unreachable(self, ident: bytes) -> None:
        """A message to ``ident`` could not be sent: unreachable; it must register again."""
        registry = self.admin.registry
        rec = registry.by_route(ident)
        if rec is None:
            return
        rec.missed = True  # its connection is closed, not stalled: no grace
        if registry.set_unreachable(rec):
            logger.warning(
                "{} unreachable: its connection is closed; it keeps its {} task(s) until it "
                "has been silent for {:g}s",
                rec.name,
                len(rec.running),
                registry.window,
                worker=rec.name,
            )

    def reachable_again(self, ident: bytes, rec: AgentRecord, msg: Message) -> None:
        """Heard from ``rec`` again; if a message to it was lost, it must register again."""
        admin = self.admin
        logger.info(
            "{} reachable again after {:.1f}s of silence",
            rec.name,
            admin.clock() - rec.last_seen,
            worker=rec.name,
        )
        if rec.missed and not isinstance(msg, Register):
            rec.missed = False
            why = "a message to you could not be sent: register again, with what you hold"
            admin.post(ident, Error(code="unknown_peer", message=why))

    # ------------------------------------------------------------------ leaving

    def on_bye(self, ident: bytes, msg: Bye) -> None:
        rec = self.admin.member(ident)
        if rec is not None:
            self.drop(rec, f"left ({msg.reason[:200] or 'bye'})")

    def check_liveness(self, now: float) -> None:
        """Silent for the window: unreachable; for the window and the grace: lost."""
        admin = self.admin
        heard = admin.endpoint.heard_until()
        for rec in admin.registry.expired(heard):
            self.drop(rec, f"lost: silent for {now - rec.last_seen:.1f}s")
        for rec in admin.registry.mark_unreachable(heard):
            logger.warning(
                "{} unreachable: silent for {:.1f}s; it keeps its {} task(s) for {:g}s more",
                rec.name,
                now - rec.last_seen,
                len(rec.running),
                admin.registry.grace,
                worker=rec.name,
            )

    def drop(self, rec: AgentRecord, reason: str) -> None:
        """``rec`` is gone (left, lost, revoked, replaced): tell the others and the hooks."""
        admin = self.admin
        if admin.registry.get(rec.id) is rec:
            admin.registry.remove(rec.id)
        level = "INFO" if reason.startswith(("left", "re-registered")) else "WARNING"
        logger.log(level, "{} disconnected: {}", rec.name, reason, worker=rec.name)
        if rec.announced:
            admin.endpoint.publish(Left(agent=ref_of(rec.detail), reason=reason))
            admin.peer_down(rec.id)
        for hook in admin.hooks:
            hook.on_lost(rec, reason)
