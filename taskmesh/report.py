"""How the CLI shows things: tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from protocol import StatusReply, TaskState
from protocol.codec import plain
from taskmesh.table import render


def to_json(value: Any) -> str:
    return json.dumps(plain(value), indent=2, default=_bytes)


def _bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def results_table(states: Sequence[TaskState]) -> str:
    rows = []
    for s in states:
        r = s.result
        rows.append(
            [
                s.id,
                s.description,
                s.difficulty,
                r.worker if r else "",
                r.skill if r else "",
                (r.success if r else "") if s.state == "done" else "",
                r.status if r else s.state,
                s.attempt,
                (r.finished - r.started) if r and r.started else None,
            ]
        )
    headers = [
        "id",
        "description",
        "difficulty",
        "worker",
        "skill",
        "success",
        "status",
        "attempt",
        "seconds",
    ]
    return render(headers, rows)


def status_table(reply: StatusReply) -> str:
    head = (
        f"manager {reply.manager_id} (epoch {reply.epoch}), "
        f"policy {reply.policy}, up {reply.uptime:.0f}s"
    )
    workers = render(
        ["worker", "id", "skill", "capacity", "running", "completed", "state", "kinds"],
        [
            [w.name, w.id, w.skill, w.capacity, w.running, w.completed, w.state, ",".join(w.kinds)]
            for w in reply.workers
        ],
    )
    counts = render(["count", "value"], sorted(reply.counts.items()))
    return f"{head}\n\n{workers}\n\n{counts}"
