"""Where a worker stands with its manager, and whether its SUB still hears it.

``Session`` is the worker's side of the handshake (offline → probing →
connected).  ``SubWatch`` decides, from when the SUB last heard the manager,
when a silent SUB is renewed and when the worker must register again: a
connected worker whose SUB missed every manager heartbeat for a liveness
window has missed broadcasts too; a probing worker that got no probe for
``PROBE_WINDOWS`` windows registers again (the manager may be probing
nobody).  Pure; the ``Worker`` acts on its verdicts.
"""

from __future__ import annotations

from enum import Enum, StrEnum

from loguru import logger


class Session(StrEnum):
    """Where a worker stands with its manager."""

    OFFLINE = "offline"  # no manager: registering
    PROBING = "probing"  # welcomed; waiting for the probe on SUB
    CONNECTED = "connected"


#: Error codes after which registering again cannot help: the worker stops.
FATAL_ERRORS = frozenset({"version", "workspace", "identity", "registration", "forbidden"})
#: Liveness windows in PROBING without a probe before the worker registers again.
PROBE_WINDOWS = 2


class WorkerRefused(RuntimeError):
    """The manager refused this worker for good (protocol version, workspace, identity)."""


class SubStep(Enum):
    KEEP = "keep"  # the SUB hears the manager (or it is early to tell)
    RENEW = "renew"  # a fresh SUB socket, same session
    REGISTER = "register"  # a fresh SUB and a new registration


class SubWatch:
    """When the SUB last heard the manager, was renewed, and began waiting for a probe."""

    def __init__(self, now: float) -> None:
        self.heard = self.renewed = self.probing_since = now

    def renew(self, now: float) -> None:
        self.heard = self.renewed = now

    def probing(self, now: float) -> None:
        self.probing_since = self.heard = self.renewed = now

    def step(self, session: Session, now: float, window: float, who: str, sub: str) -> SubStep:
        """What the worker must do about its SUB now (and the log line that says why)."""
        if session == Session.CONNECTED:
            if now - self.heard <= window:
                return SubStep.KEEP
            logger.warning(
                "{}: no heartbeat from the manager on {} for {:.1f}s; "
                "renewing the SUB and registering again",
                who,
                sub,
                now - self.heard,
            )
            return SubStep.REGISTER  # the manager probes the new SUB; we keep our tasks
        if session == Session.PROBING:
            if now - self.probing_since > PROBE_WINDOWS * window:
                logger.warning(
                    "{}: no probe from the manager on {} for {:.1f}s (a fresh SUB every {:.1f}s); "
                    "registering again. If this repeats: is that PUB address and port reachable "
                    "from here?",
                    who,
                    sub,
                    now - self.probing_since,
                    window,
                )
                return SubStep.REGISTER
            if now - self.renewed > window:
                logger.debug("{}: no probe on {} yet; renewing the SUB", who, sub)
                return SubStep.RENEW
        return SubStep.KEEP
