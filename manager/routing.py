"""Ceylon's messaging through the manager: ``direct`` to one agent, ``broadcast`` to all.

Only connected members may send, and only as themselves; the manager
forwards a direct message to its target's connection and re-publishes a
broadcast on PUB, delivering both to its own ``on_message`` when it is the
target (a broadcast always reaches it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocol import AgentState, Broadcast, Direct, Error

if TYPE_CHECKING:
    from manager.admin import Admin

#: Largest broadcast sequence number accepted (exact in a float64, as in JavaScript).
MAX_SEQ = 2**53


class Routing:
    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    def on_direct(self, ident: bytes, msg: Direct) -> None:
        admin = self.admin
        if not self._is_member(ident, msg.sender):
            return
        if msg.target == admin.id:
            admin.deliver(msg.sender, msg.data, msg.time)
            return
        target = admin.registry.get(msg.target)
        if target is None or not target.announced:
            admin.post(
                ident,
                Error(code="unknown_target", message=f"no connected agent {msg.target[:64]!r}"),
            )
            return

        def unreachable() -> None:
            why = f"{msg.target[:64]!r} is unreachable"
            admin.post(ident, Error(code="unknown_target", message=why))

        admin.endpoint.post(target.route, msg, on_fail=unreachable)

    def on_broadcast(self, ident: bytes, msg: Broadcast) -> None:
        admin = self.admin
        if not self._is_member(ident, msg.sender):
            return
        if not 0 <= msg.seq <= MAX_SEQ:  # gap counting adds up what peers claim: bound it
            admin.endpoint.bad(ident, f"broadcast seq {msg.seq} out of range", b"")
            why = f"broadcast.seq must be 0-{MAX_SEQ}"
            admin.post(ident, Error(code="bad_message", message=why))
            return
        admin.endpoint.publish(msg)
        admin.deliver(msg.sender, msg.data, msg.time, msg.seq)

    def _is_member(self, ident: bytes, sender: str) -> bool:
        admin = self.admin
        rec = admin.member(ident)
        if rec is None or rec.state == AgentState.PENDING:
            admin.membership.unknown(ident)
            return False
        if sender != rec.id:
            admin.endpoint.bad(ident, f"claims to be {sender[:64]!r}", b"")
            admin.post(ident, Error(code="spoofed_sender", message="sender must be your own id"))
            return False
        return True
