"""``taskmesh status`` and ``taskmesh inspect`` for people: sections, not a dump of counters.

The JSON of the same (``--json``) is ``protocol.views``; this is the text.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol import AgentState, ResultStatus, StatusReply, TaskState, TaskStatus, WorkerInfo
from protocol.views import TASK_COUNTS, success_rate
from taskmesh.table import render

#: Counters that are task counts, shown in the tasks section (not under --verbose).
TASK_KEYS = frozenset({*TASK_COUNTS, "duplicates", "stale"})
#: Running ids shown per worker in the status table.
SHOWN_IDS = 3


def duration(seconds: float) -> str:
    """``4s``, ``2m 03s``, ``5h 02m``, ``3d 04h``: a span at a glance."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    minutes, s = divmod(s, 60)
    if minutes < 60:
        return f"{minutes}m {s:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def status_text(reply: StatusReply, verbose: bool = False) -> str:
    """The manager, its tasks, its workers (and, ``verbose``, its internal id and protocol
    counters)."""
    name = reply.manager_name or "manager"
    ident = f" ({reply.manager_id})" if verbose else ""
    parts = [
        f"manager {name}{ident}, policy {reply.policy}, up {duration(reply.uptime)}",
        tasks_section(reply),
        workers_section(reply.workers),
    ]
    if verbose:
        counters = sorted((k, v) for k, v in reply.counts.items() if k not in TASK_KEYS)
        parts.append(f"counters (epoch {reply.epoch})\n" + render(["counter", "value"], counters))
    return "\n\n".join(parts)


def tasks_section(reply: StatusReply) -> str:
    counts = reply.counts
    failures = sorted((n, s) for s, n in reply.results.items() if s != ResultStatus.SUCCEEDED and n)
    waiting = sum(reply.waiting.values())
    note = f"{waiting:,} of them waiting (below)" if waiting else ""
    rows: list[tuple[str, int, str]] = [
        ("queued", counts.get(TaskStatus.QUEUED, 0), note),
        ("running", counts.get(TaskStatus.RUNNING, 0), ""),
        ("succeeded", counts.get(ResultStatus.SUCCEEDED, 0), ""),
        # "failed" here is every finished task without success, not the status alone
        ("failed", counts.get("failed", 0), ", ".join(f"{s} {n:,}" for n, s in failures[::-1])),
    ]
    width = max(len(f"{n:,}") for _, n, _ in rows)
    lines = ["tasks"]
    lines += [f"  {label:<10} {n:>{width},}  {note}".rstrip() for label, n, note in rows]
    rate = success_rate(reply)
    done = counts.get(TaskStatus.DONE, 0)
    summary = f"{rate:.1%} of {done:,} succeeded" if rate is not None else "none finished yet"
    lines.append(f"  {summary}; {reply.rate:,.1f} tasks/s over the last minute")
    for why, n in sorted(reply.waiting.items(), key=lambda item: -item[1]):
        lines.append(f"  {n:,} waiting: {why}")
    return "\n".join(lines)


def workers_section(workers: Sequence[WorkerInfo]) -> str:
    connected = sum(1 for w in workers if w.state == AgentState.CONNECTED)
    head = f"workers ({connected} connected)"
    if not workers:
        return head + "\n  none: start one with 'taskmesh worker --skill N'"
    rows = [
        [
            w.name,
            w.host,
            w.pid or "",
            w.skill,
            ",".join(w.kinds),
            w.capacity,
            _running(w),
            f"{w.completed:,} ({w.failed:,})",
            f"{w.total_completed:,} ({w.total_failed:,})",
            f"{duration(w.silent_for)} ago",
            w.state,
        ]
        for w in sorted(workers, key=lambda w: (w.name, w.id))
    ]
    headers = ["name", "host", "pid", "skill", "kinds", "capacity", "running"]
    headers += ["done (failed)", "total (failed)", "last heard", "state"]
    return head + "\n" + render(headers, rows)


def _running(w: WorkerInfo) -> str:
    if not w.running:
        return "0"
    ids = ", ".join(w.tasks[:SHOWN_IDS])
    more = w.running - min(len(w.tasks), SHOWN_IDS)
    return f"{w.running}: {ids}" + (f" +{more}" if more > 0 else "")


def inspect_text(w: WorkerInfo, running: Sequence[TaskState]) -> str:
    """One worker in detail, and the tasks it runs."""
    total = w.total_completed
    rate = f" ({(total - w.total_failed) / total:.1%} succeeded)" if total else ""
    fields = [
        ("state", f"{w.state}, last heard {duration(w.silent_for)} ago"),
        ("registered", f"{duration(w.connected_for)} ago"),
        ("host", w.host or "(not reported)"),
        ("pid", str(w.pid or "(not reported)")),
        ("role", w.role),
        ("skill", str(w.skill)),
        ("kinds", ", ".join(w.kinds) or "(none)"),
        ("capacity", f"{w.capacity} ({w.running} running)"),
        ("since joined", f"{w.completed:,} done, {w.failed:,} failed"),
        ("in total", f"{total:,} done, {w.total_failed:,} failed{rate}"),
    ]
    lines = [f"worker {w.name} ({w.id})"]
    lines += [f"  {label:<13} {value}" for label, value in fields]
    text = "\n".join(lines)
    if not running:
        return text + "\n\nrunning tasks: none"
    table = render(
        ["id", "attempt", "difficulty", "description"],
        [[s.id, s.attempt, s.difficulty, s.description] for s in running],
    )
    more = w.running - len(running)
    tail = f"\n... and {more:,} more" if more > 0 else ""
    return f"{text}\n\nrunning tasks\n{table}{tail}"
