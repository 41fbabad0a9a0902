"""What the journal costs per task on this machine, in process, against bare SQLite.

``taskmesh bench --journal file`` shows what the journal does to end-to-end
throughput; this shows where that bound comes from.  It times, on a real
SQLite file in a temporary directory:

- **journal**: ``manager.journal.Journal`` as the manager uses it for each
  task: ``add`` (one statement per submitted batch), ``finished`` (one per
  results batch, the result encoded) and ``commit``, in batches like the
  bench's;
- **bare SQLite**: the same two statements on the same schema with
  pre-encoded blobs, nothing else: the floor any SQLite journal of this
  shape pays here.

and prints µs per task for both (medians of ``--repeat`` runs).  Compare with
the manager's µs per task in ``taskmesh bench`` (memory vs file) from the
same session.

    .venv/bin/python -m bench.journal_cost --tasks 50000
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import click

from manager.journal import Journal
from manager.schema import create
from protocol import ResultStatus, TaskResult, TaskSpec, TaskStatus
from protocol.codec import pack, plain
from taskmesh.table import render

#: Tasks per submitted batch and per results message (as the bench's runs see them).
TASKS_PER_ADD = 500
RESULTS_PER_FINISH = 50


def tasks(count: int) -> list[tuple[TaskSpec, TaskResult]]:
    out = []
    for i in range(count):
        spec = TaskSpec(id=f"t{i}", kind="noop")
        result = TaskResult(
            task_id=spec.id,
            attempt=1,
            worker="w0",
            worker_id="w0-1",
            success=True,
            status=ResultStatus.SUCCEEDED,
            started=1.0,
            finished=2.0,
            skill=10,
        )
        out.append((spec, result))
    return out


def journal_us(work: list[tuple[TaskSpec, TaskResult]], path: Path) -> float:
    journal = Journal(str(path))
    try:
        start = time.perf_counter()
        for first in range(0, len(work), TASKS_PER_ADD):
            batch = work[first : first + TASKS_PER_ADD]
            journal.add([(first + i + 1, spec) for i, (spec, _) in enumerate(batch)])
            journal.commit()
            for at in range(0, len(batch), RESULTS_PER_FINISH):
                done = batch[at : at + RESULTS_PER_FINISH]
                journal.finished([(first + at + i + 1, s, r, "") for i, (s, r) in enumerate(done)])
            journal.commit()
        return (time.perf_counter() - start) / len(work) * 1e6
    finally:
        journal.close()


def bare_us(work: list[tuple[TaskSpec, TaskResult]], path: Path) -> float:
    spec_blob = pack(plain(work[0][0]))
    result_blob = pack(plain(work[0][1]))
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        create(db)
        start = time.perf_counter()
        for first in range(0, len(work), TASKS_PER_ADD):
            seqs = range(first + 1, first + 1 + min(TASKS_PER_ADD, len(work) - first))
            db.execute("BEGIN")
            db.executemany(
                f"INSERT OR IGNORE INTO tasks(seq, id, spec, state, owner) "
                f"VALUES (?, ?, ?, '{TaskStatus.QUEUED}', '')",
                [(seq, f"t{seq}", spec_blob) for seq in seqs],
            )
            db.execute("COMMIT")
            db.execute("BEGIN")
            db.executemany(
                f"UPDATE tasks SET state='{TaskStatus.DONE}', attempt=1, worker='w0-1', "
                "status='succeeded', result=?, finished=2.0 WHERE seq=?",
                [(result_blob, seq) for seq in seqs],
            )
            db.execute("COMMIT")
        return (time.perf_counter() - start) / len(work) * 1e6
    finally:
        db.close()


@click.command()
@click.option("--tasks", "count", type=click.IntRange(1_000, 2_000_000), default=50_000)
@click.option("--repeat", type=click.IntRange(1, 10), default=3)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def main(count: int, repeat: int, as_json: bool) -> None:
    """Time the journal's per-task work against bare SQLite statements."""
    work = tasks(count)
    runs: dict[str, list[float]] = {"journal": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(repeat):  # interleaved: both see the same machine
            runs["journal"].append(journal_us(work, Path(tmp) / f"j{n}.db"))
            runs["bare"].append(bare_us(work, Path(tmp) / f"b{n}.db"))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    if as_json:
        click.echo(json.dumps({"tasks": count, "us_per_task": medians, "runs": runs}))
        return
    rows = [
        [name, f"{medians[name]:.1f}", " ".join(f"{v:.1f}" for v in runs[name])] for name in runs
    ]
    click.echo(render(["what", "µs/task (median)", "runs"], rows))


if __name__ == "__main__":
    main()
