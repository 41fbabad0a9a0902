"""The durable store: every accepted task and every final result, in SQLite (WAL).

Writes happen inside an open transaction; ``commit`` ends it.  The manager
commits once per batch of messages it handled (group commit) and only then
sends the acknowledgements those messages earned, so a client's submission
and a worker's result are on disk before they are acknowledged.  With WAL and
``synchronous=NORMAL`` a commit survives the manager being killed at any
moment (not a power cut: use ``fsync=True`` for that).

One row a task, addressed by ``seq`` (submission order, chosen by the
manager): an insert when it is accepted, an update when it is assigned and
one when it is final.  ``owner`` is the CURVE key of the client that
submitted it and ``worker_key`` that of the worker it was assigned to (both
``''`` without CURVE), so a restarted manager keeps tenants apart and gives
a task back only to the key it was assigned to.  Finished tasks are served
from here; the most recent results also from memory (``RecentResults``).

The ``attempts`` table keeps the history: one row per earlier attempt of a
task (a retried error, a lost worker, a final result an operator's retry
superseded), by task id, in the order they happened.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from manager.schema import create
from manager.store import (
    RECENT_JOURNALED,
    Done,
    Finished,
    LiveRow,
    Purged,
    RecentResults,
    final_state,
    purgeable,
    visible,
)
from protocol import ResultStatus, TaskResult, TaskSpec, TaskState, TaskStatus, build
from protocol.codec import pack, plain, unpack

#: Ids per ``IN (...)`` query (SQLite's default limit on bound variables is 32,766).
CHUNK = 500
V = TypeVar("V")
#: Seconds an assignment waits before it is written (most short tasks finish first).
ASSIGN_DELAY = 0.2


class JournalError(RuntimeError):
    """The journal file cannot be opened or used (path, permissions, not a database)."""


class Journal:
    durable = True

    def __init__(
        self,
        path: str,
        *,
        fsync: bool = False,
        keep: int = RECENT_JOURNALED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.clock = clock
        self.commits = 0
        self.recent = RecentResults(keep)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._db.execute("PRAGMA cache_size=-4096")  # 4 MiB of pages: fresh rows stay hot
            create(self._db)
            (last,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM tasks").fetchone()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot use {path!r} as the journal: {exc}") from None
        self._next = int(last) + 1
        self._open = False
        #: seq -> (attempt, worker id, worker key, when), not yet written
        self._assigned: dict[int, tuple[int, str, str, float]] = {}

    def _begin(self) -> sqlite3.Connection:
        if not self._open:
            self._db.execute("BEGIN")
            self._open = True
        return self._db

    def next_seq(self) -> int:
        return self._next

    def add(self, tasks: Sequence[tuple[int, TaskSpec]], owner: str = "") -> list[str]:
        """Record new tasks of ``owner``; returns the ids among them that the journal
        already has.

        One statement; only when some id was known (a resubmission of a
        finished task) does it look further.
        """
        if not tasks:
            return []
        self._next = max(self._next, tasks[-1][0] + 1)
        rows = [(seq, spec.id, pack(plain(spec)), owner) for seq, spec in tasks]
        db = self._begin()
        cur = db.executemany(
            "INSERT OR IGNORE INTO tasks(seq, id, spec, state, owner) "
            f"VALUES (?, ?, ?, '{TaskStatus.QUEUED}', ?)",
            rows,
        )
        if cur.rowcount == len(rows):
            return []
        ours = {task_id: seq for seq, task_id, _, _ in rows}
        known = []
        for start in range(0, len(rows), CHUNK):
            chunk = [task_id for _, task_id, _, _ in rows[start : start + CHUNK]]
            marks = ",".join("?" * len(chunk))
            for task_id, seq in db.execute(
                f"SELECT id, seq FROM tasks WHERE id IN ({marks})", chunk
            ):
                if ours[task_id] != seq:
                    known.append(task_id)
        return known

    def assigned(self, rows: Iterable[tuple[int, int, str, str]]) -> None:
        """``(seq, attempt, worker_id, worker_key)`` of tasks now running.

        Written at the first commit at least ``ASSIGN_DELAY`` later, and not at
        all for a task that finished or went back to the queue meanwhile: a
        short task costs no assignment write.  Should the manager die before,
        the journal shows the task queued; its worker names it in ``holding``
        when it registers with the new instance, which adopts it.
        """
        now = self.clock()
        for seq, attempt, worker, key in rows:
            self._assigned[seq] = (attempt, worker, key, now)

    def requeued(self, seq: int, lost: TaskResult | None = None) -> None:
        self._assigned.pop(seq, None)
        db = self._begin()
        if lost is not None:
            self._keep(db, lost)
        db.execute(f"UPDATE tasks SET state='{TaskStatus.QUEUED}', worker='' WHERE seq=?", (seq,))

    def retrying(self, seq: int, result: TaskResult, retried: int, not_before: float) -> None:
        self._assigned.pop(seq, None)
        db = self._begin()
        self._keep(db, result)
        db.execute(
            f"UPDATE tasks SET state='{TaskStatus.QUEUED}', worker='', attempt=?, retried=?, "
            "not_before=? WHERE seq=?",
            (result.attempt, retried, not_before, seq),
        )

    @staticmethod
    def _keep(db: sqlite3.Connection, result: TaskResult) -> None:
        """An earlier attempt joins its task's history."""
        db.execute(
            "INSERT INTO attempts(id, attempt, status, result, worker) VALUES (?, ?, ?, ?, ?)",
            (
                result.task_id,
                result.attempt,
                str(result.status),
                pack(plain(result)),
                result.worker_id,
            ),
        )

    def finished(self, done: Sequence[Done]) -> None:
        if not done:
            return
        for seq, _, _, _ in done:
            self._assigned.pop(seq, None)
        self._begin().executemany(
            f"UPDATE tasks SET state='{TaskStatus.DONE}', attempt=?, worker=?, status=?, result=?, "
            "finished=? WHERE seq=?",
            [
                (r.attempt, r.worker_id, str(r.status), pack(plain(r)), r.finished, seq)
                for seq, _, r, _ in done
            ],
        )
        self.recent.put(done)

    def reopen(self, rows: Sequence[Done]) -> list[int]:
        db = self._begin()
        seqs = []
        for seq, spec, result, _ in rows:
            self._keep(db, result)
            db.execute(
                f"UPDATE tasks SET seq=?, state='{TaskStatus.QUEUED}', worker='', worker_key='', "
                "attempt=?, result=NULL, status=NULL, finished=NULL, retried=0, base=?, "
                "not_before=0 WHERE seq=?",
                (self._next, result.attempt, result.attempt, seq),
            )
            self.recent.pop(spec.id)
            seqs.append(self._next)
            self._next += 1
        return seqs

    def purge(self, where: Finished, before: float | None, owner: str | None) -> Purged:
        sql = f"state = '{TaskStatus.DONE}'"
        args: list[object] = []
        if where is not None:
            sql += " AND status = ?" if where[1] else " AND status != ?"
            args.append(where[0])
        if before is not None:
            sql += " AND finished < ?"
            args.append(before)
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        db = self._begin()
        purged: Purged = Counter()
        for status, who, count in db.execute(
            f"SELECT status, owner, count(*) FROM tasks WHERE {sql} GROUP BY status, owner", args
        ):
            purged[(str(status), str(who))] += count
        if purged:
            db.execute(f"DELETE FROM attempts WHERE id IN (SELECT id FROM tasks WHERE {sql})", args)
            db.execute(f"DELETE FROM tasks WHERE {sql}", args)
            self.recent.drop(purgeable(where, before, owner))
        return purged

    def _write_assignments(self, all_: bool = False) -> None:
        limit = self.clock() - ASSIGN_DELAY
        due = [
            (attempt, worker, key, seq)
            for seq, (attempt, worker, key, at) in self._assigned.items()
            if all_ or at <= limit
        ]
        if due:
            self._begin().executemany(
                f"UPDATE tasks SET state='{TaskStatus.RUNNING}', attempt=?, worker=?, worker_key=? "
                "WHERE seq=?",
                due,
            )
            for _, _, _, seq in due:
                del self._assigned[seq]

    def commit(self) -> None:
        if self._assigned:
            self._write_assignments()
        if self._open:
            self._db.execute("COMMIT")
            self._open = False
            self.commits += 1

    def close(self) -> None:
        self._write_assignments(all_=True)
        self.commit()
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    # ------------------------------------------------------------------ reading

    def unfinished(self) -> Iterator[LiveRow]:
        """Every task not yet final, in submission order, as last committed."""
        cur = self._db.execute(
            "SELECT seq, spec, state, attempt, worker, owner, worker_key, retried, base, "
            f"not_before FROM tasks WHERE state != '{TaskStatus.DONE}' ORDER BY seq"
        )
        for seq, spec, state, attempt, worker, owner, key, retried, base, not_before in cur:
            yield LiveRow(
                seq=seq,
                spec=build(TaskSpec, unpack(spec)),
                state=TaskStatus(state),
                attempt=attempt,
                worker=worker,
                owner=owner,
                worker_key=key,
                retried=retried,
                base=base,
                not_before=not_before,
            )

    def history(self, task_id: str) -> list[TaskResult]:
        sql = "SELECT result FROM attempts WHERE id = ? ORDER BY rowid"
        cur = self._db.execute(sql, (task_id,))
        return [build(TaskResult, unpack(blob)) for (blob,) in cur]

    def done(self, ids: Sequence[str]) -> dict[str, Done]:
        out: dict[str, Done] = {}
        missing = _split(ids, self.recent.entry, out)
        for seq, spec, result, owner in self._done_rows("seq, spec, result, owner", missing):
            task = build(TaskSpec, unpack(spec))
            out[task.id] = (seq, task, build(TaskResult, unpack(result)), owner)
        return out

    def _done_rows(self, columns: str, ids: list[str]) -> Iterator[tuple[Any, ...]]:
        """``columns`` of the finished tasks among ``ids``, read in chunks of ``CHUNK``."""
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            done = TaskStatus.DONE
            sql = f"SELECT {columns} FROM tasks WHERE state = '{done}' AND id IN ({marks})"
            yield from self._db.execute(sql, chunk)

    def tally(self) -> dict[str, int]:
        """Final results by status (``succeeded``, ``failed`` ...) as committed."""
        counts: Counter[str] = Counter()
        for status, count in self._db.execute(
            f"SELECT status, count(*) FROM tasks WHERE state = '{TaskStatus.DONE}' GROUP BY status"
        ):
            counts[str(status)] += count
        return dict(counts)

    def worker_tally(self) -> dict[str, tuple[int, int]]:
        """Results of attempts per worker id, final or in the history: ``(recorded, of them
        without success)``, as committed."""
        cur = self._db.execute(
            f"SELECT worker, count(*), sum(status != '{ResultStatus.SUCCEEDED}') FROM ("
            f" SELECT worker, status FROM tasks WHERE state = '{TaskStatus.DONE}' AND worker != ''"
            " UNION ALL SELECT worker, status FROM attempts WHERE worker != ''"
            ") GROUP BY worker"
        )
        return {str(worker): (int(done), int(failed or 0)) for worker, done, failed in cur}

    def owners(self) -> dict[str, int]:
        """Tasks per owner (``''``: submitted without CURVE), as committed."""
        cur = self._db.execute("SELECT owner, count(*) FROM tasks GROUP BY owner")
        return {str(owner): int(count) for owner, count in cur}

    def final_owned(self, ids: Sequence[str]) -> dict[str, tuple[TaskState, str]]:
        """The final states of those of ``ids`` that are done, with their owners."""
        out: dict[str, tuple[TaskState, str]] = {}
        missing = _split(ids, self.recent.get, out)
        for spec, result, owner in self._done_rows("spec, result, owner", missing):
            state = _state(spec, result)
            out[state.id] = (state, owner)
        return out

    def final(self, ids: Sequence[str], owner: str | None = None) -> dict[str, TaskState]:
        """The final states of those of ``ids`` that are done (and ``owner``'s, if given)."""
        return visible(self.final_owned(ids), owner)

    def page(
        self, after: int, limit: int, where: Finished = None, owner: str | None = None
    ) -> list[tuple[int, TaskState]]:
        """Done tasks after ``seq`` ``after`` (only those ``where`` wants, and ``owner``'s if
        given), in submission order."""
        sql = f"SELECT seq, spec, result FROM tasks WHERE seq > ? AND state = '{TaskStatus.DONE}'"
        args: list[object] = [after]
        if where is not None:
            sql += " AND status = ?" if where[1] else " AND status != ?"
            args.append(where[0])
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        cur = self._db.execute(sql + " ORDER BY seq LIMIT ?", (*args, limit))
        return [(seq, _state(spec, result)) for seq, spec, result in cur]


def _state(spec: bytes, result: bytes) -> TaskState:
    return final_state(build(TaskSpec, unpack(spec)), build(TaskResult, unpack(result)))


def _split(ids: Sequence[str], cached: Callable[[str], V | None], out: dict[str, V]) -> list[str]:
    """Put the ids ``cached`` knows into ``out``; return the others (to read from the file)."""
    missing = []
    for task_id in ids:
        hit = cached(task_id)
        if hit is not None:
            out[task_id] = hit
        else:
            missing.append(task_id)
    return missing
