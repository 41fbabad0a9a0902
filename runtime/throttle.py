"""Rate-limited warnings: one line per subject (a peer, a key) per period, and a summary.

A peer that sends junk as fast as it can must not be able to flood the log:
the first event about a subject in a period is logged, later ones are only
counted, and at most once a period one line sums up what was not logged.
Nor can many peers (fresh connections, new keys): each throttle logs at most
``MAX_LINES`` lines a period whatever the subjects, and counts the rest into
the same summary.  (The manager's counters, shown by ``taskmesh status``,
count every event.)
"""

from __future__ import annotations

import time
from collections.abc import Callable

from loguru import logger

#: Seconds between two lines about the same subject, and between summaries.
PERIOD = 10.0
#: Lines a throttle logs at most per period, over all its subjects (the summary aside).
MAX_LINES = 20
#: Subjects remembered at most (the oldest are forgotten first).
MAX_SUBJECTS = 10_000


class Throttle:
    """``if throttle.allow(peer): logger.warning(...)``; ``throttle.summary()`` now and then."""

    def __init__(
        self,
        what: str,
        *,
        period: float = PERIOD,
        max_lines: int = MAX_LINES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.period = period
        self.max_lines = max_lines
        self.clock = clock
        self._last: dict[object, float] = {}
        self._suppressed = 0
        self._subjects: set[object] = set()
        self._summarised = clock()
        self._window = self._summarised  # when the current line budget began
        self._lines = 0  # lines allowed since then

    def allow(self, subject: object) -> bool:
        """True when a line about ``subject`` may be logged now; else it is counted."""
        now = self.clock()
        self.summary(now)
        if now - self._window >= self.period:
            self._window, self._lines = now, 0
        last = self._last.get(subject)
        if (last is not None and now - last < self.period) or self._lines >= self.max_lines:
            self._suppressed += 1
            if len(self._subjects) < MAX_SUBJECTS:
                self._subjects.add(subject)
            return False
        if len(self._last) >= MAX_SUBJECTS:
            self._forget(now)
        self._last[subject] = now
        self._lines += 1
        return True

    def summary(self, now: float | None = None) -> None:
        """Log what was suppressed, if anything and if a period passed since the last summary."""
        now = self.clock() if now is None else now
        if not self._suppressed or now - self._summarised < self.period:
            return
        logger.warning(
            "{} more {} from {} peer(s) not logged in the last {:.0f}s",
            self._suppressed,
            self.what,
            len(self._subjects),
            now - self._summarised,
        )
        self._suppressed = 0
        self._subjects.clear()
        self._summarised = now

    def _forget(self, now: float) -> None:
        old = [s for s, at in self._last.items() if now - at >= self.period]
        for subject in old or list(self._last)[: MAX_SUBJECTS // 2]:
            del self._last[subject]
