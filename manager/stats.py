"""What the manager counts for ``status``, ``inspect`` and ``/metrics``: cheap and incremental.

- Per worker id, the results recorded for attempts it ran (the final ones,
  those retried after their backoff, and attempts lost with it), and how
  many of them failed: in total, seeded from the journal's tasks and
  attempt history when the manager starts (so a restart loses none), and
  since it registered (the totals minus a snapshot taken at its
  registration).
- Each worker's host and pid, as its ``register`` said.
- Assignments, and re-runs: tasks queued again after losing their worker
  (``lost``) or after a failed attempt with retries left (``retry``).
- The finished count, sampled once a second: the rate over the last minute
  and the throughput history of the status page.
- Journal commit latency and, once ``durations()`` is called (metrics on),
  task durations by kind, in fixed buckets: one bisect and one increment
  per result, no object per task.

Everything here runs on the manager's event loop, as the rest of its state.
"""

from __future__ import annotations

import itertools
import math
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from manager.hooks import AdminHooks
from manager.registry import AgentRecord
from manager.store import Store
from manager.taskbook import Live
from protocol import MAX_NAME, Register, ResultStatus, TaskResult, WorkerInfo

if TYPE_CHECKING:
    from manager.service import TaskService

#: Throughput samples kept (one a second: ten minutes).
HISTORY = 600
SAMPLE_EVERY = 1.0
#: Seconds the status's rate looks back.
RATE_WINDOW = 60.0
DURATION_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
)
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: Kinds with a duration histogram of their own; later ones share ``OTHER``.
KINDS_WITH_HISTOGRAM = 100
OTHER = "(other)"


class Buckets:
    """A histogram with fixed upper bounds (Prometheus's ``le``, inclusive)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, observations <= le)`` for every bound and ``+Inf``."""
        running = itertools.accumulate(self.counts)
        les = [*(f"{b:g}" for b in self.bounds), "+Inf"]
        return list(zip(les, running, strict=True))


@dataclass(slots=True)
class Seen:
    """A registered worker as its registration described it."""

    host: str
    pid: int
    completed_before: int  # its totals when it registered
    failed_before: int


class Stats(AdminHooks):
    """Counts kept as tasks move; attached to the admin by the task service."""

    def __init__(self, service: TaskService) -> None:
        self.service = service
        self.totals: dict[str, list[int]] = {
            wid: [done, failed] for wid, (done, failed) in service.store.worker_tally().items()
        }
        self.seen: dict[str, Seen] = {}
        self.assignments = 0
        self.reruns: Counter[str] = Counter()  # "lost", "retry"
        #: ``(unix time, finished, finished without success)``, one a second.
        self.samples: deque[tuple[float, int, int]] = deque(maxlen=HISTORY)
        self._sampled_at: deque[float] = deque(maxlen=HISTORY)  # the same, monotonic
        self._next_sample = -math.inf
        self.commits = Buckets(COMMIT_BUCKETS)
        self.by_kind: dict[str, Buckets] | None = None

    def durations(self) -> dict[str, Buckets]:
        """Task durations by kind, kept from now on (metrics are on)."""
        if self.by_kind is None:
            self.by_kind = {}
        return self.by_kind

    # ------------------------------------------------------------------ hot path

    def recorded(self, done: Sequence[tuple[int, Live, TaskResult]]) -> None:
        """Results of attempts recorded: final ones (one call per batch), retried or lost."""
        totals = self.totals
        for _, _, result in done:
            wid = result.worker_id
            if wid:
                counts = totals.get(wid)
                if counts is None:
                    counts = totals[wid] = [0, 0]
                counts[0] += 1
                if not result.success:
                    counts[1] += 1
        if self.by_kind is not None:
            self._timed(self.by_kind, done)

    @staticmethod
    def _timed(by_kind: dict[str, Buckets], done: Sequence[tuple[int, Live, TaskResult]]) -> None:
        kind, hist = "", None
        for _, task, result in done:
            took = result.finished - result.started
            if not result.started or not 0 <= took < math.inf:
                continue  # given up by the manager: it never ran
            if hist is None or task.spec.kind != kind:
                kind = task.spec.kind
                hist = by_kind.get(kind)
                if hist is None:
                    key = kind if len(by_kind) < KINDS_WITH_HISTOGRAM else OTHER
                    hist = by_kind.get(key) or by_kind.setdefault(key, Buckets(DURATION_BUCKETS))
            hist.counts[bisect_left(hist.bounds, took)] += 1
            hist.sum += took
            hist.count += 1

    def commit(self, store: Store) -> None:
        """Commit ``store``, timing the commits that wrote something."""
        commits, started = store.commits, time.perf_counter()
        store.commit()
        if store.commits != commits:
            self.commits.observe(time.perf_counter() - started)

    # ------------------------------------------------------------------ hooks

    def on_joined(self, rec: AgentRecord, old: AgentRecord | None, msg: Register) -> None:
        done, failed = self.totals.get(rec.id, (0, 0))
        self.seen[rec.id] = Seen(msg.host[:MAX_NAME], max(0, msg.pid), done, failed)

    def on_lost(self, rec: AgentRecord, reason: str) -> None:
        if self.service.admin.registry.get(rec.id) is None:  # not replaced by a new record
            self.seen.pop(rec.id, None)

    def on_tick(self, now: float) -> None:
        if now < self._next_sample:
            return
        self._next_sample = now + SAMPLE_EVERY
        done, failed = self.done_counts()
        self.samples.append((time.time(), done, failed))
        self._sampled_at.append(now)

    # ------------------------------------------------------------------ reading

    def done_counts(self) -> tuple[int, int]:
        """Tasks with a final result, and how many of them did not succeed."""
        before, now = self.service.done_before, self.service.book.finished
        done = sum(before.values()) + sum(now.values())
        succeeded = ResultStatus.SUCCEEDED
        return done, done - before[succeeded] - now[succeeded]

    def rate(self, now: float) -> float:
        """Tasks finished per second over the last minute (less while younger)."""
        if not self.samples:
            return 0.0
        done, _ = self.done_counts()
        start = len(self._sampled_at) - 1
        while start > 0 and now - self._sampled_at[start - 1] <= RATE_WINDOW:
            start -= 1
        elapsed = now - self._sampled_at[start]
        return (done - self.samples[start][1]) / elapsed if elapsed > 0 else 0.0

    def worker_info(
        self, rec: AgentRecord, now: float, ids: int, viewer: str | None = None
    ) -> WorkerInfo:
        """``rec`` as ``status`` shows it, with up to ``ids`` of its running task ids
        (only ``viewer``'s tasks, if given: with CURVE a client key sees its own only)."""
        running: Iterable[str] = rec.running
        if viewer is not None:
            book = self.service.book
            running = (i for i in rec.running if (t := book.get(i)) and t.owner == viewer)
        seen = self.seen.get(rec.id)
        done, failed = self.totals.get(rec.id, (0, 0))
        before_done, before_failed = (
            (seen.completed_before, seen.failed_before) if seen else (done, failed)
        )
        return WorkerInfo(
            id=rec.id,
            name=rec.name,
            role=rec.role,
            skill=rec.skill,
            capacity=rec.capacity,
            kinds=sorted(rec.kinds),
            running=len(rec.running),
            completed=done - before_done,
            state=rec.state,
            silent_for=max(0.0, now - rec.last_seen),
            host=seen.host if seen else "",
            pid=seen.pid if seen else 0,
            tasks=list(itertools.islice(running, ids)),
            failed=failed - before_failed,
            total_completed=done,
            total_failed=failed,
            connected_for=max(0.0, now - rec.registered),
        )
