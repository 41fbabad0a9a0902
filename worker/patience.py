"""A worker waiting for its manager says so, less and less often.

Registering goes on every quarter second, silently; this adds a log line
after 5 s without a manager, then after 10, 20, 40 ... seconds, at most every
``LONGEST`` seconds: enough to see from the log that the worker is alive
and waiting (and for what), never a flood.  Under a minute it is INFO (a
worker started before its manager is normal), after that WARNING.
"""

from __future__ import annotations

from loguru import logger

FIRST = 5.0
LONGEST = 300.0
#: Seconds of waiting after which the line is a warning.
WORRYING = 60.0
#: Seconds between two log lines about a refused registration that is retried.
REFUSAL_LOG_EVERY = 10.0


class Patience:
    def __init__(self, name: str, where: str) -> None:
        self.name = name
        self.where = where
        self.since: float | None = None
        self._next = FIRST
        #: Why the last registration was not accepted, if the manager said.
        self.refusal = ""
        self._refusal_logged = -float("inf")

    def refused(self, now: float, why: str) -> None:
        """A registration was refused for a reason that may pass (``id_taken``): retried,
        logged at most every ``REFUSAL_LOG_EVERY`` seconds."""
        self.refusal = why[:200]
        if now - self._refusal_logged >= REFUSAL_LOG_EVERY:
            self._refusal_logged = now
            logger.warning("{}: registration refused: {}; retrying", self.name, why)

    def waiting(self, now: float) -> None:
        """Still without a manager at ``now`` (called at every registration attempt)."""
        if self.since is None:
            self.since, self._next = now, FIRST
            return
        waited = now - self.since
        if waited < self._next:
            return
        self._next = min(self._next * 2, waited + LONGEST)
        why = f" (last answer: {self.refusal})" if self.refusal else " (no answer yet)"
        logger.log(
            "WARNING" if waited >= WORRYING else "INFO",
            "{}: still waiting for a manager at {} after {:.0f}s{}; registering again",
            self.name,
            self.where,
            waited,
            why,
        )

    def connected(self) -> None:
        self.since = None
        self.refusal = ""
