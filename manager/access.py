"""Who may send what, with CURVE on: roles by key, revoked keys, and key reloads.

A component of the ``Admin`` when ``--secret-key`` is set (``KeyRing`` holds
the allow-lists; ``manager.auth`` does the ZAP side of the handshake).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from manager.auth import WORKER, KeyRing, Verdict, forbidden_text
from protocol import Error, Message
from runtime.throttle import Throttle

if TYPE_CHECKING:
    from manager.admin import Admin


class Access:
    def __init__(self, admin: Admin, keyring: KeyRing) -> None:
        self.admin = admin
        self.keyring = keyring
        self._refusals = Throttle("refused messages")

    def permitted(self, ident: bytes, msg: Message) -> bool:
        """May this message's key send it?  A removed key gets no answer; a wrong role does."""
        admin = self.admin
        key = admin.endpoint.peer_key
        verdict = self.keyring.check(key, msg)
        if verdict is Verdict.ALLOWED:
            return True
        if verdict is Verdict.REVOKED:
            admin.counters["auth_revoked"] += 1
            if self._refusals.allow(key):
                logger.warning("dropped a {} from key {}: no longer listed", msg.TYPE, key)
            return False
        admin.counters["forbidden"] += 1
        if self._refusals.allow(key):
            logger.warning("refused {} from key {}: wrong role", msg.TYPE, self.keyring.name(key))
        req = getattr(msg, "req", 0)
        error = Error(code="forbidden", message=forbidden_text(msg), req=req)
        admin.post(ident, error)
        return False

    def viewer(self) -> str | None:
        """Whose tasks the current message may see: ``None`` for all (operator keys),
        else the sender's key (a client sees its own tasks only)."""
        key = self.admin.endpoint.peer_key
        return None if self.keyring.sees_all(key) else key

    def reload(self) -> None:
        """Read the key directories again (SIGHUP, or a change seen by the tick).

        Agents registered with a key that is no longer listed as a worker's are
        dropped (their tasks go to others); messages from removed keys are
        dropped from now on.
        """
        admin = self.admin
        lost = self.keyring.reload()
        if not lost:
            return
        admin.counters["keys_revoked"] += len(lost)
        for rec in admin.registry:
            if WORKER in lost.get(rec.key, ()):
                admin.membership.drop(rec, "lost: key revoked")
        if any(WORKER in roles for roles in lost.values()):
            admin.pub_stale = True  # its open SUB connections must go: the tick loop renews
        for hook in admin.hooks:
            hook.on_revoked(set(lost))
