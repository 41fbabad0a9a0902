"""How the CLI shows things to people: tables (``taskmesh.views`` makes the JSON)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from protocol import TaskState, TaskStatus
from taskmesh.table import render

HEADERS = [
    "id",
    "description",
    "difficulty",
    "worker",
    "skill",
    "status",
    "attempt",
    "seconds",
    "error",
]


def results_csv(states: Sequence[TaskState]) -> str:
    """The results table as CSV (one header line, one line a task)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADERS)
    writer.writerows(_rows(states, width=None))
    return out.getvalue()


def results_table(states: Sequence[TaskState]) -> str:
    """One row a task; a failure shows its reason, not just its status."""
    return render(HEADERS, _rows(states, width=60))


def _rows(states: Sequence[TaskState], width: int | None) -> list[list[object]]:
    rows: list[list[object]] = []
    for s in states:
        r = s.result
        error = ""
        if r is not None and r.error is not None:
            error = f"{r.error.type}: {r.error.message}".replace("\n", " ")
            if width is not None and len(error) > width:
                error = error[: width - 3] + "..."
        elif s.waiting:
            error = f"waiting: {s.waiting}"  # queued, and no connected worker can run it
        elif s.state != TaskStatus.DONE:
            error = s.state  # queued, running, or unknown: no result yet
        rows.append(
            [
                s.id,
                s.description,
                s.difficulty if s.state != TaskStatus.UNKNOWN else "",
                r.worker if r else "",
                r.skill if r and r.worker else "",  # no worker ran it: no skill either
                r.status if r else s.state,
                s.attempt,
                (r.finished - r.started) if r and r.started else None,
                error,
            ]
        )
    return rows
