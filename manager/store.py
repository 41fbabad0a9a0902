"""Where finished tasks go: the record behind ``tasks`` queries, paging and restarts.

Only live tasks (queued or running) are kept in the manager's memory (the
``TaskBook``); a task that has its final result leaves it and lives on in a
``Store``:

- ``Journal`` (``manager.journal``): SQLite, WAL; every accepted task and
  every final result, durable before it is acknowledged.  A restarted
  manager resumes from it.
- ``MemoryStore`` (``--db :memory:``): no file and no SQL.  It keeps the
  most recent ``keep`` final results (100,000 by default) and forgets older
  ones: their ids read as unknown and may be submitted again, and a restart
  forgets everything.  For experiments where durability is not the point.

Both keep the most recent results in memory (``RecentResults``), so waiting
clients and ``tasks`` queries for fresh results never reach SQLite.

Every task has an ``owner``: the CURVE key of the client that submitted it
(``""`` without CURVE).  Reads take an ``owner`` to see only that owner's
tasks, or ``None`` to see all.

Besides its final result a task has a *history*: the results of its earlier
attempts — errors that were retried, attempts whose worker was lost, and
final results an operator's ``retry`` superseded.  ``purge`` forgets
finished tasks with their history.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from protocol import ResultStatus, TaskFilter, TaskResult, TaskSpec, TaskState, TaskStatus

#: Final results kept in memory: the only record without a journal; with one, a cache
#: that spares SQLite the reads of fresh results.
RECENT = 100_000
RECENT_JOURNALED = 10_000


@dataclass(frozen=True, slots=True)
class LiveRow:
    """An unfinished task as the store last committed it (for a restart)."""

    seq: int
    spec: TaskSpec
    state: TaskStatus
    attempt: int
    worker: str
    owner: str = ""
    worker_key: str = ""  # the CURVE key of the worker it runs on
    retried: int = 0  # attempts of this run that were retried (``Live.retried``)
    base: int = 0  # attempts before the last operator's retry (``Live.base``)
    not_before: float = 0.0  # unix time its retry backoff ends (0: none)


#: Which finished tasks a page wants: ``None`` all; ``(status, True)`` only that
#: status; ``(status, False)`` every status but that one.
Finished = tuple[str, bool] | None


def finished_where(state: str) -> Finished:
    """What ``state`` (a ``tasks``/``purge`` filter other than queued or running) wants."""
    if state in (TaskFilter.ALL, TaskStatus.DONE):
        return None
    if state == TaskFilter.FAILED:  # done without success
        return (ResultStatus.SUCCEEDED, False)
    return (state, True)  # one result status


def matches(state: TaskState, where: Finished) -> bool:
    if where is None or state.result is None:
        return where is None
    status, equal = where
    return (state.result.status == status) == equal


def final_state(spec: TaskSpec, result: TaskResult) -> TaskState:
    return TaskState(
        id=spec.id,
        state=TaskStatus.DONE,
        attempt=result.attempt,
        description=spec.description,
        difficulty=spec.difficulty,
        worker=result.worker_id,
        result=result,
    )


#: A final result as stored: ``(seq, spec, result, owner)``.
Done = tuple[int, TaskSpec, TaskResult, str]
#: Tasks purged, by ``(status, owner)``.
Purged = Counter[tuple[str, str]]


def purgeable(where: Finished, before: float | None, owner: str | None) -> Callable[[Done], bool]:
    """Whether a finished task is one ``purge(where, before, owner)`` removes."""

    def wanted(done: Done) -> bool:
        result = done[2]
        if where is not None and (result.status == where[0]) != where[1]:
            return False
        if before is not None and result.finished >= before:
            return False
        return owner is None or done[3] == owner

    return wanted


class Store(Protocol):
    """What the task service needs of a store (see the module docstring)."""

    path: str
    commits: int
    durable: bool

    def next_seq(self) -> int: ...

    def add(self, tasks: Sequence[tuple[int, TaskSpec]], owner: str = "") -> list[str]: ...

    def assigned(self, rows: Iterable[tuple[int, int, str, str]]) -> None:
        """``(seq, attempt, worker id, worker key)`` of tasks now running."""
        ...

    def requeued(self, seq: int, lost: TaskResult | None = None) -> None:
        """The task is queued again; ``lost``, the attempt that lost its worker, joins
        its history."""
        ...

    def retrying(self, seq: int, result: TaskResult, retried: int, not_before: float) -> None:
        """``result`` is retried: it joins the history; the task waits, queued, until
        ``not_before`` (unix time)."""
        ...

    def finished(self, done: Sequence[Done]) -> None: ...

    def history(self, task_id: str) -> list[TaskResult]:
        """The results of ``task_id``'s earlier attempts, oldest first (not its final one)."""
        ...

    def done(self, ids: Sequence[str]) -> dict[str, Done]:
        """The finished ones of ``ids`` as stored, whoever owns them."""
        ...

    def reopen(self, rows: Sequence[Done]) -> list[int]:
        """These finished tasks run again (an operator's retry): each final result joins
        the history, and each task is queued under a new ``seq`` (returned, in order)."""
        ...

    def purge(self, where: Finished, before: float | None, owner: str | None) -> Purged:
        """Forget the finished tasks ``where`` wants (and ``owner``'s, if given) that
        finished before ``before`` (unix time; ``None``: any time), with their history."""
        ...

    def commit(self) -> None: ...

    def close(self) -> None: ...

    def unfinished(self) -> Iterator[LiveRow]: ...

    def tally(self) -> dict[str, int]: ...

    def worker_tally(self) -> dict[str, tuple[int, int]]:
        """Results of attempts per worker id (final and earlier): ``(recorded, of them
        without success)``, as committed."""
        ...

    def owners(self) -> dict[str, int]:
        """Tasks per owner, as committed."""
        ...

    def final_owned(self, ids: Sequence[str]) -> dict[str, tuple[TaskState, str]]:
        """The final states of those of ``ids`` that are done, with their owners."""
        ...

    def final(self, ids: Sequence[str], owner: str | None = None) -> dict[str, TaskState]: ...

    def page(
        self, after: int, limit: int, where: Finished = None, owner: str | None = None
    ) -> list[tuple[int, TaskState]]: ...


def visible(owned: dict[str, tuple[TaskState, str]], owner: str | None) -> dict[str, TaskState]:
    """The states ``owner`` may see (``None``: all)."""
    return {i: state for i, (state, who) in owned.items() if owner is None or who == owner}


class RecentResults:
    """The last ``keep`` final results by task id, with their spec and submission order."""

    def __init__(self, keep: int = RECENT) -> None:
        self.keep = keep
        self._done: OrderedDict[str, Done] = OrderedDict()

    def __len__(self) -> int:
        return len(self._done)

    def put(self, done: Sequence[Done]) -> None:
        table = self._done
        for entry in done:
            table[entry[1].id] = entry
        while len(table) > self.keep:
            table.popitem(last=False)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._done

    def entry(self, task_id: str) -> Done | None:
        return self._done.get(task_id)

    def pop(self, task_id: str) -> None:
        self._done.pop(task_id, None)

    def drop(self, wanted: Callable[[Done], bool]) -> list[Done]:
        """Forget the entries ``wanted`` picks; returns them."""
        gone = [entry for entry in self._done.values() if wanted(entry)]
        for entry in gone:
            del self._done[entry[1].id]
        return gone

    def get(self, task_id: str) -> tuple[TaskState, str] | None:
        """The final state of ``task_id`` and its owner, if it is among the recent."""
        hit = self._done.get(task_id)
        return (final_state(hit[1], hit[2]), hit[3]) if hit is not None else None

    def items(self, owner: str | None = None) -> Iterator[tuple[int, TaskState]]:
        return (
            (seq, final_state(spec, result))
            for seq, spec, result, who in self._done.values()
            if owner is None or who == owner
        )


class MemoryStore:
    """``--db :memory:``: nothing durable; the most recent ``keep`` results, no SQL."""

    durable = False

    def __init__(self, keep: int = RECENT) -> None:
        self.path = ":memory:"
        self.commits = 0
        self.recent = RecentResults(keep)
        self._history: OrderedDict[str, list[TaskResult]] = OrderedDict()
        self._next = 1

    def next_seq(self) -> int:
        return self._next

    def add(self, tasks: Sequence[tuple[int, TaskSpec]], owner: str = "") -> list[str]:
        """Returns the ids among ``tasks`` it already has a result for."""
        if not tasks:
            return []
        self._next = max(self._next, tasks[-1][0] + 1)
        recent = self.recent
        return [spec.id for _, spec in tasks if spec.id in recent]

    def assigned(self, rows: Iterable[tuple[int, int, str, str]]) -> None:
        pass

    def requeued(self, seq: int, lost: TaskResult | None = None) -> None:
        if lost is not None:
            self._remember(lost)

    def retrying(self, seq: int, result: TaskResult, retried: int, not_before: float) -> None:
        self._remember(result)

    def _remember(self, result: TaskResult) -> None:
        """Keep an earlier attempt (the histories of the last ``keep`` tasks only)."""
        self._history.setdefault(result.task_id, []).append(result)
        self._history.move_to_end(result.task_id)
        while len(self._history) > self.recent.keep:
            self._history.popitem(last=False)

    def finished(self, done: Sequence[Done]) -> None:
        self.recent.put(done)

    def history(self, task_id: str) -> list[TaskResult]:
        return list(self._history.get(task_id, ()))

    def done(self, ids: Sequence[str]) -> dict[str, Done]:
        return {i: hit for i in ids if (hit := self.recent.entry(i)) is not None}

    def reopen(self, rows: Sequence[Done]) -> list[int]:
        seqs = []
        for _, spec, result, _ in rows:
            self.recent.pop(spec.id)
            self._remember(result)
            seqs.append(self._next)
            self._next += 1
        return seqs

    def purge(self, where: Finished, before: float | None, owner: str | None) -> Purged:
        purged: Purged = Counter()
        for _, spec, result, who in self.recent.drop(purgeable(where, before, owner)):
            self._history.pop(spec.id, None)
            purged[(str(result.status), who)] += 1
        return purged

    def commit(self) -> None:
        self.commits += 1

    def close(self) -> None:
        pass

    def unfinished(self) -> Iterator[LiveRow]:
        return iter(())

    def tally(self) -> dict[str, int]:
        return {}

    def worker_tally(self) -> dict[str, tuple[int, int]]:
        return {}

    def owners(self) -> dict[str, int]:
        return {}

    def final_owned(self, ids: Sequence[str]) -> dict[str, tuple[TaskState, str]]:
        out = {}
        for task_id in ids:
            hit = self.recent.get(task_id)
            if hit is not None:
                out[task_id] = hit
        return out

    def final(self, ids: Sequence[str], owner: str | None = None) -> dict[str, TaskState]:
        return visible(self.final_owned(ids), owner)

    def page(
        self, after: int, limit: int, where: Finished = None, owner: str | None = None
    ) -> list[tuple[int, TaskState]]:
        rows = sorted(
            (
                (seq, state)
                for seq, state in self.recent.items(owner)
                if seq > after and matches(state, where)
            ),
            key=lambda row: row[0],
        )
        return rows[:limit]
