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
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from protocol import TaskResult, TaskSpec, TaskState, TaskStatus

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


#: Which finished tasks a page wants: ``None`` all; ``(status, True)`` only that
#: status; ``(status, False)`` every status but that one.
Finished = tuple[str, bool] | None


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

    def requeued(self, seq: int) -> None: ...

    def finished(self, done: Sequence[Done]) -> None: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...

    def unfinished(self) -> Iterator[LiveRow]: ...

    def tally(self) -> dict[str, int]: ...

    def worker_tally(self) -> dict[str, tuple[int, int]]:
        """Final results per worker id: ``(recorded, of them without success)``, as committed."""
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

    def requeued(self, seq: int) -> None:
        pass

    def finished(self, done: Sequence[Done]) -> None:
        self.recent.put(done)

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
