"""The journal's tables (``manager.journal``), and how older journals are brought up to date."""

from __future__ import annotations

import sqlite3

from protocol.codec import unpack

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq      INTEGER PRIMARY KEY,
    id       TEXT NOT NULL UNIQUE,
    spec     BLOB NOT NULL,
    state    TEXT NOT NULL,
    attempt  INTEGER NOT NULL DEFAULT 0,
    worker   TEXT NOT NULL DEFAULT '',
    result   BLOB,
    status   TEXT,
    owner    TEXT NOT NULL DEFAULT '',
    worker_key TEXT NOT NULL DEFAULT '',
    retried  INTEGER NOT NULL DEFAULT 0,
    base     INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    finished REAL
);
DROP INDEX IF EXISTS tasks_state;
CREATE TABLE IF NOT EXISTS attempts (
    id       TEXT NOT NULL,
    attempt  INTEGER NOT NULL,
    status   TEXT NOT NULL,
    result   BLOB NOT NULL,
    worker   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS attempts_id ON attempts(id);
"""
#: Columns added since the first journals, with their declarations.
ADDED = {
    "owner": "TEXT NOT NULL DEFAULT ''",  # every task so far: one tenant, no keys
    "worker_key": "TEXT NOT NULL DEFAULT ''",
    "retried": "INTEGER NOT NULL DEFAULT 0",
    "base": "INTEGER NOT NULL DEFAULT 0",
    "not_before": "REAL NOT NULL DEFAULT 0",
}


def create(db: sqlite3.Connection) -> None:
    """Create the tables a journal needs, or bring an older journal's up to date."""
    db.executescript(SCHEMA)
    migrate(db)


def migrate(db: sqlite3.Connection) -> None:
    """Journals written before a column: added; ``status`` and ``finished`` are read
    from the results."""
    kept = {row[1] for row in db.execute("PRAGMA table_info(attempts)")}
    if "worker" not in kept:  # attempts kept before: not counted for any worker
        db.execute("ALTER TABLE attempts ADD COLUMN worker TEXT NOT NULL DEFAULT ''")
    columns = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    for column, declaration in ADDED.items():
        if column not in columns:
            db.execute(f"ALTER TABLE tasks ADD COLUMN {column} {declaration}")
    if "status" in columns and "finished" in columns:
        return
    for column in ("status TEXT", "finished REAL"):
        if column.split()[0] not in columns:
            db.execute(f"ALTER TABLE tasks ADD COLUMN {column}")
    rows = db.execute("SELECT seq, result FROM tasks WHERE result IS NOT NULL")
    fill = [
        (r.get("status"), r.get("finished"), seq)
        for seq, blob in rows.fetchall()
        if isinstance(r := unpack(blob), dict)
    ]
    db.execute("BEGIN")
    db.executemany("UPDATE tasks SET status=?, finished=? WHERE seq=?", fill)
    db.execute("COMMIT")
