"""Answers instead of silence: why a queued task waits, and ``--unmatched fail``.

A queued task waits *for a reason* when no task worker that takes work (or
is about to: pending, connected, or unreachable but expected back; not
draining) advertises its kind with enough skill, the rule placement applies
(``manager.placement``): ``no worker runs kind 'nope'``, ``no worker with
skill >= 9 (best: 7)``, ``no worker connected``.  With ``--unmatched
strongest`` skill is no reason (the strongest worker of the kind runs it).
While ``--expect-workers`` holds assignments, that is the reason of every
task that has no other.

Reasons are computed per request from the registry (one pass over the
workers, then one lookup per ``(kind, difficulty)`` queue), never per task:
a ``status`` costs the same with a million tasks queued.

``--unmatched fail`` records a task no worker can run as failed as soon as
it is submitted.  A manager that has just started does not know its workers
yet (they find it within a liveness window), so until it has been up for a
window, and ``--expect-workers`` is satisfied, such tasks wait; then the
queued ones that still have no worker fail, and from then on each is judged
when it is submitted.  A task already queued that loses its last capable
worker later keeps waiting (a worker restarting must not fail the queue).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from loguru import logger

from manager.taskbook import Live, QueueKey, TaskBook
from protocol import AgentState, ErrorInfo, ResultStatus, TaskResult, TaskSpec

if TYPE_CHECKING:
    from manager.service import TaskService

#: A final result on its way to the store: ``(seq, task, result)``.
Given = tuple[int, Live, TaskResult]


class Capable:
    """The best skill on offer per kind, among the task workers that take work."""

    def __init__(self, service: TaskService) -> None:
        self.best: dict[str, int] = {}
        self.workers = 0
        for rec in service.admin.registry:
            state = rec.before if rec.state == AgentState.UNREACHABLE else rec.state
            if rec.capacity <= 0 or state == AgentState.DRAINING:
                continue
            self.workers += 1
            for kind in rec.kinds:
                if self.best.get(kind, -1) < rec.skill:
                    self.best[kind] = rec.skill
        self.skill_matters = service.config.unmatched != "strongest"
        self.held = ""
        if service.waiting_for_workers > 0:
            expected = service.config.expect_workers
            self.held = f"assignments held until {expected} workers connect ({self.workers} so far)"
        self._cache: dict[QueueKey, str] = {}

    def unmatched(self, kind: str, difficulty: int) -> str:
        """Why no worker can run a task of ``kind`` and ``difficulty`` ("" if one can)."""
        key = (kind, difficulty)
        why = self._cache.get(key)
        if why is None:
            why = self._cache[key] = self._why(kind, difficulty)
        return why

    def reason(self, kind: str, difficulty: int) -> str:
        """Why a queued task waits beyond a free slot ("": it waits for nothing in particular)."""
        return self.unmatched(kind, difficulty) or self.held

    def _why(self, kind: str, difficulty: int) -> str:
        if not self.workers:
            return "no worker connected"
        best = self.best.get(kind)
        if best is None:
            return f"no worker runs kind {kind[:64]!r}"
        if best < difficulty and self.skill_matters:
            return f"no worker with skill >= {difficulty} (best: {best})"
        return ""


def waiting_counts(book: TaskBook, capable: Capable) -> dict[str, int]:
    """Queued tasks by the reason they wait (those waiting only for a slot left out)."""
    counts: Counter[str] = Counter()
    for (kind, difficulty), queue in book.queues().items():
        why = capable.reason(kind, difficulty)
        if why:
            counts[why] += len(queue)
    return dict(counts)


class Unmatched:
    """The service's part for tasks nobody can run: reasons at submission, ``--unmatched fail``."""

    def __init__(self, service: TaskService) -> None:
        self.service = service
        self.failing = service.config.unmatched == "fail"
        #: ``fail`` judges tasks once the manager has given its workers time to find it.
        self.settled = False

    def capable(self) -> Capable:
        return Capable(self.service)

    def sort(self, fresh: Sequence[tuple[int, TaskSpec]]) -> tuple[dict[str, str], set[str]]:
        """The accepted tasks no worker can run (id -> why); and those to fail now (``fail``)."""
        capable = self.capable()
        keys = {(spec.kind, spec.difficulty) for _, spec in fresh}
        if not any(capable.unmatched(kind, difficulty) for kind, difficulty in keys):
            return {}, set()
        why = {
            spec.id: reason
            for _, spec in fresh
            if (reason := capable.unmatched(spec.kind, spec.difficulty))
        }
        return why, set(why) if self.settled else set()

    def fail(
        self, fresh: Sequence[tuple[int, TaskSpec]], failing: set[str], owner: str
    ) -> list[Given]:
        """Final ``failed`` results for the ``failing`` ones of ``fresh`` (never in the book)."""
        capable = self.capable()
        out: list[Given] = []
        finished = time.time()
        for seq, spec in fresh:
            if spec.id in failing:
                why = capable.unmatched(spec.kind, spec.difficulty) or "no worker can run it"
                task = Live(spec=spec, seq=seq, owner=owner)
                out.append((seq, task, _failure(spec, why, finished)))
                self.service.book.finished[ResultStatus.FAILED] += 1
        if out:
            logger.info("{} task(s) failed at once: no worker can run them", len(out))
        return out

    def settle(self, now: float) -> list[Given]:
        """With ``fail``: once settled, the queued tasks nobody can run fail (once)."""
        service = self.service
        if not self.failing or self.settled or service.waiting_for_workers > 0:
            return []
        if now - service.admin.started < service.config.window:
            return []
        self.settled = True
        capable = self.capable()
        book = service.book
        queues = book.queues()
        out: list[Given] = []
        finished = time.time()
        for key in [k for k in queues if capable.unmatched(*k)]:
            why = capable.unmatched(*key)
            for task in queues.pop(key):  # popped whole: give_up finds no queue to search
                result = book.give_up(task, ResultStatus.FAILED, _message(why), finished)
                out.append((task.seq, task, result))
        if out:
            logger.info("{} queued task(s) failed: no worker can run them", len(out))
        return out


def _message(why: str) -> str:
    return f"no connected worker can run it: {why} (--unmatched fail)"


def _failure(spec: TaskSpec, why: str, finished: float) -> TaskResult:
    return TaskResult(
        task_id=spec.id,
        attempt=0,
        worker="",
        worker_id="",
        success=False,
        status=ResultStatus.FAILED,
        error=ErrorInfo(type=ResultStatus.FAILED, message=_message(why)),
        finished=finished,
    )
