"""The durable journal: every accepted task and every final result, in SQLite (WAL).

Writes happen inside an open transaction; ``commit`` ends it.  The manager
commits once per batch of messages it handled (group commit) and only then
sends the acknowledgements those messages earned, so a client's submission
and a worker's result are on disk before they are acknowledged.  With WAL and
``synchronous=NORMAL`` a commit survives the manager being killed at any
moment (not a power cut: use ``fsync=True`` for that).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from protocol import TaskResult, TaskSpec, TaskStatus, build
from protocol.codec import pack, plain, unpack

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    spec     BLOB NOT NULL,
    state    TEXT NOT NULL,
    attempt  INTEGER NOT NULL DEFAULT 0,
    worker   TEXT NOT NULL DEFAULT '',
    result   BLOB
);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state);
"""


@dataclass(frozen=True, slots=True)
class JournalRow:
    spec: TaskSpec
    state: TaskStatus
    attempt: int
    worker: str
    result: TaskResult | None


class Journal:
    def __init__(self, path: str, *, fsync: bool = False) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._db.executescript(SCHEMA)
        self._open = False
        self.commits = 0

    def _begin(self) -> sqlite3.Connection:
        if not self._open:
            self._db.execute("BEGIN")
            self._open = True
        return self._db

    def add(self, specs: Iterable[TaskSpec]) -> None:
        self._begin().executemany(
            "INSERT OR IGNORE INTO tasks(id, spec, state) VALUES (?, ?, 'queued')",
            [(s.id, pack(plain(s))) for s in specs],
        )

    def assigned(self, items: Iterable[tuple[str, int, str]]) -> None:
        """``(task_id, attempt, worker_id)`` for tasks now running."""
        self._begin().executemany(
            "UPDATE tasks SET state='running', attempt=?, worker=? WHERE id=?",
            [(attempt, worker, task_id) for task_id, attempt, worker in items],
        )

    def requeued(self, task_id: str) -> None:
        self._begin().execute("UPDATE tasks SET state='queued', worker='' WHERE id=?", (task_id,))

    def finished(self, results: Iterable[TaskResult]) -> None:
        self._begin().executemany(
            "UPDATE tasks SET state='done', attempt=?, result=? WHERE id=?",
            [(r.attempt, pack(plain(r)), r.task_id) for r in results],
        )

    def commit(self) -> None:
        if self._open:
            self._db.execute("COMMIT")
            self._open = False
            self.commits += 1

    def rows(self) -> Iterator[JournalRow]:
        """Every task in submission order, as last committed."""
        cur = self._db.execute(
            "SELECT spec, state, attempt, worker, result FROM tasks ORDER BY seq"
        )
        for spec, state, attempt, worker, result in cur:
            yield JournalRow(
                spec=build(TaskSpec, unpack(spec)),
                state=TaskStatus(state),
                attempt=attempt,
                worker=worker,
                result=build(TaskResult, unpack(result)) if result is not None else None,
            )

    def close(self) -> None:
        self.commit()
        if self.path != ":memory:":
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
