"""How a layer attaches to the manager's agent layer: the ``AdminHooks`` extension points.

An extension is an object with these methods (all optional: subclass
``AdminHooks`` and override what you need) passed to ``Admin.use``.  The task
layer (``manager.service.TaskService``) is one.  Hooks are plain functions:
they change state and ``post`` messages through the admin; nothing is sent
until the batch is committed.

In the order an agent meets them:

- ``message_handlers()``: message types this extension handles, once, at ``use``.
- ``on_joined(rec, old, msg)``: a registration was accepted; ``rec`` is
  pending (its SUB not yet proven); ``old`` is the record it replaced, if any.
- ``on_ready(rec)``: ``rec`` is connected (both channels proven).
- ``on_lost(rec, reason)``: ``rec`` left, was silent for the liveness window
  and the requeue grace, or was replaced by a re-registration.  An agent
  only ``unreachable`` (silent for the window, or a message to it could not
  be sent) is not lost: it keeps ``rec.running`` and gets no new work.
- ``on_tick(now)``: every tick (a quarter heartbeat, at most 0.1 s).
- ``before_ack()``: make the state changes of the handled batch durable; runs
  before any reply of that batch is sent.
- ``on_close()``: the manager is stopping; the last batch is committed.
- ``on_revoked(keys)``: these CURVE keys lost a role when the key directories
  were read again; nothing more is accepted from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from manager.registry import AgentRecord
from protocol import Message, Register

Handler = Callable[[bytes, Any], None]


class AdminHooks:
    """No-op extension points; override the ones a layer needs."""

    def message_handlers(self) -> Mapping[type[Message], Handler]:
        return {}

    def on_joined(self, rec: AgentRecord, old: AgentRecord | None, msg: Register) -> None:
        pass

    def on_ready(self, rec: AgentRecord) -> None:
        pass

    def on_lost(self, rec: AgentRecord, reason: str) -> None:
        pass

    def on_tick(self, now: float) -> None:
        pass

    def before_ack(self) -> None:
        pass

    def on_close(self) -> None:
        pass

    def on_revoked(self, keys: set[str]) -> None:
        pass
