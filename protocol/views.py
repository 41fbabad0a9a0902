"""The JSON of every ``--json`` and of the manager's status page: one shape per object.

Seven objects — a task (with its result), a worker, the status, a
submission, what an action did (``cancel``, ``retry``), a purge, and a
task's attempt history — each described by a JSON Schema in
``taskmesh/schemas/`` that the tests validate every command's output
against.  Times are ISO 8601 in UTC, bytes are hex, and no wire-only field
(``req``, ``type``) appears.  These are the
records' form for people and scripts, not the wire: they live beside the
records so that the CLI (``taskmesh``) and the manager's HTTP status page
(``manager.httpd``) print the same documents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from protocol import (
    ActionReply,
    ErrorInfo,
    HistoryReply,
    ResultStatus,
    StatusReply,
    TaskFilter,
    TaskResult,
    TaskState,
    TaskStatus,
    WorkerInfo,
)


def iso(unix: float) -> str | None:
    """A unix time as ISO 8601 UTC to the millisecond; ``None`` for 0 (not known)."""
    if not unix:
        return None
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def error_view(error: ErrorInfo | None) -> dict[str, str] | None:
    if error is None:
        return None
    return {"type": error.type, "message": error.message, "traceback": error.traceback}


def result_view(result: TaskResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    seconds = result.finished - result.started if result.started and result.finished else None
    return {
        "status": str(result.status),
        "success": result.success,
        "attempt": result.attempt,
        "worker": result.worker,
        "worker_id": result.worker_id,
        "skill": result.skill,
        "output": _plain(result.output),
        "error": error_view(result.error),
        "started": iso(result.started),
        "finished": iso(result.finished),
        "seconds": round(seconds, 6) if seconds is not None else None,
    }


def task_view(state: TaskState) -> dict[str, Any]:
    return {
        "id": state.id,
        "state": str(state.state),
        "attempt": state.attempt,
        "description": state.description,
        "difficulty": state.difficulty if state.state != TaskStatus.UNKNOWN else None,
        "worker_id": state.worker or None,
        "result": result_view(state.result),
        "waiting": state.waiting or None,
    }


def worker_view(info: WorkerInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "role": info.role,
        "state": str(info.state),
        "skill": info.skill,
        "capacity": info.capacity,
        "kinds": list(info.kinds),
        "host": info.host,
        "pid": info.pid or None,
        "running": info.running,
        "tasks": list(info.tasks),
        "completed": info.completed,
        "failed": info.failed,
        "total_completed": info.total_completed,
        "total_failed": info.total_failed,
        "connected_for": round(info.connected_for, 3),
        "silent_for": round(info.silent_for, 3),
    }


TASK_COUNTS = (
    TaskStatus.QUEUED,
    TaskStatus.RUNNING,
    TaskStatus.DONE,
    ResultStatus.SUCCEEDED,
    TaskFilter.FAILED,
)


def success_rate(reply: StatusReply) -> float | None:
    """Succeeded of the finished tasks (``None`` before any finished)."""
    done = reply.counts.get(TaskStatus.DONE, 0)
    return reply.counts.get(ResultStatus.SUCCEEDED, 0) / done if done else None


def status_view(reply: StatusReply) -> dict[str, Any]:
    counts = dict(reply.counts)
    tasks: dict[str, Any] = {key: counts.pop(key, 0) for key in TASK_COUNTS}
    rate = success_rate(reply)
    tasks.update(
        {
            "results": dict(sorted(reply.results.items())),
            "success_rate": round(rate, 6) if rate is not None else None,
            "per_second": round(reply.rate, 3),
            "waiting": dict(reply.waiting),
        }
    )
    return {
        "manager": {
            "id": reply.manager_id,
            "name": reply.manager_name,
            "epoch": reply.epoch,
            "policy": reply.policy,
            "uptime": round(reply.uptime, 3),
        },
        "tasks": tasks,
        "workers": [worker_view(w) for w in reply.workers],
        "counters": counts,
    }


def submission_view(
    accepted: Sequence[str],
    known: Sequence[str],
    results: Sequence[TaskState] | None = None,
    pending: Sequence[str] | None = None,
    unmatched: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"accepted": list(accepted), "known": list(known)}
    if unmatched:
        out["unmatched"] = dict(unmatched)
    if results is not None:
        out["results"] = [task_view(s) for s in results]
    if pending is not None:
        out["pending"] = list(pending)
    return out


def action_view(reply: ActionReply) -> dict[str, Any]:
    """What ``cancel`` or ``retry`` did: the tasks acted on as they stand now, and why
    the others were refused."""
    return {
        "acted": [{"id": s.id, "state": str(s.state), "attempt": s.attempt} for s in reply.acted],
        "refused": [{"id": r.id, "code": r.code, "message": r.message} for r in reply.refused],
    }


def purge_view(purged: int, state: str, older_than: float) -> dict[str, Any]:
    return {"purged": purged, "state": state, "older_than": older_than}


def history_view(reply: HistoryReply) -> dict[str, Any]:
    """A task and every recorded attempt's result, oldest first, the final one last."""
    return {
        "task": task_view(reply.task),
        "attempts": [result_view(r) for r in reply.attempts],
        "omitted": reply.omitted,
    }


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2)
