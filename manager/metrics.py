"""Prometheus metrics of the manager, read at scrape time from what it keeps anyway.

One custom collector: when ``/metrics`` is fetched it reads the task book's
counts, the finished tallies, the registry, the endpoint's counters and
``Stats``, on the manager's event loop (``manager.httpd``), so it sees one
consistent state and nothing on the hot path knows about Prometheus.

Counters only ever grow, from the manager's start: ``taskmesh_results_total``
counts results recorded since then (``TaskBook.finished``), never the journal's
finished rows, which ``purge`` and ``retry`` take away; those are the gauge
``taskmesh_tasks_done{status}``.  The
only per-task work done for metrics is the duration histogram
(``Stats.durations``: a bisect and an increment per result, once metrics
are on).  prometheus-client is the optional extra ``metrics``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from manager.stats import Buckets
from manager.waiting import waiting_counts
from protocol import AgentState, ResultStatus, TaskStatus

if TYPE_CHECKING:
    from manager.service import TaskService

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        InfoMetricFamily,
    )
    from prometheus_client.process_collector import ProcessCollector

    AVAILABLE = True
except ImportError:  # pragma: no cover - the extra is installed with dev
    AVAILABLE = False

#: Endpoint counters that are protocol errors (``taskmesh_protocol_errors_total{kind}``).
ERRORS = (
    "bad_messages",
    "handler_errors",
    "unknown_peer",
    "send_failures",
    "replies_dropped",
    "replies_too_large",
    "submits_refused",
    "results_duplicate",
    "results_stale",
    "results_unknown",
    "auth_refused",
    "handshakes_failed",
    "forbidden",
    "auth_revoked",
)
#: Always reported, even at 0 (so that alerts have a series to watch).
ALWAYS = ("bad_messages", "handler_errors")


class MetricsUnavailable(RuntimeError):
    """``--metrics-port`` was given but prometheus-client is not installed."""


def require() -> None:
    if not AVAILABLE:
        raise MetricsUnavailable(
            "--metrics-port needs prometheus-client: pip install 'taskmesh[metrics]'"
        )


class Metrics:
    """The manager's registry: its collector and the process's (CPU, memory, files)."""

    content_type: str = ""

    def __init__(self, service: TaskService) -> None:
        require()
        service.stats.durations()  # from now on, task durations are kept
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ManagerCollector(service))
        self.registry.register(ProcessCollector(registry=None))
        self.content_type = CONTENT_TYPE_LATEST

    def render(self) -> bytes:
        body: bytes = generate_latest(self.registry)
        return body


class ManagerCollector:
    def __init__(self, service: TaskService) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        service = self.service
        admin, book, stats = service.admin, service.book, service.stats
        finished = service.done_before + book.finished
        info = InfoMetricFamily("taskmesh_manager", "The manager instance.")
        info.add_metric(
            [],
            {
                "name": admin.name,
                "id": admin.id,
                "epoch": admin.epoch,
                "policy": service.config.policy,
            },
        )
        yield info
        tasks = GaugeMetricFamily("taskmesh_tasks", "Tasks by state.", labels=["state"])
        tasks.add_metric([TaskStatus.QUEUED], book.queued)
        tasks.add_metric([TaskStatus.RUNNING], book.running)
        tasks.add_metric([TaskStatus.DONE], sum(finished.values()))
        yield tasks
        shown = sorted({ResultStatus.SUCCEEDED, ResultStatus.FAILED, *finished, *book.finished})
        done = GaugeMetricFamily(
            "taskmesh_tasks_done",
            "Finished tasks in the journal by result status (purge and retry lower it).",
            labels=["status"],
        )
        results = CounterMetricFamily(
            "taskmesh_results",
            "Final results recorded since the manager started, by status.",
            labels=["status"],
        )
        for status in shown:
            done.add_metric([status], finished.get(status, 0))
            results.add_metric([status], book.finished.get(status, 0))
        yield done
        yield results
        yield _counter("taskmesh_assignments", "Attempts assigned to workers.", stats.assignments)
        reruns = CounterMetricFamily(
            "taskmesh_reruns",
            "Tasks queued to run again: after losing their worker, for a retry after a failed "
            "attempt, or by an operator's retry.",
            labels=["why"],
        )
        for why in ("lost", "retry"):
            reruns.add_metric([why], stats.reruns[why])
        reruns.add_metric(["operator"], admin.counters.get("tasks_retried", 0))
        yield reruns
        yield _counter(
            "taskmesh_cancellations",
            "Tasks recorded as cancelled since the manager started.",
            book.finished.get(ResultStatus.CANCELLED, 0),
        )
        yield from self._queues()
        yield from self._workers()
        yield from self._protocol()
        yield _histogram(
            "taskmesh_journal_commit_seconds", "Journal commit latency.", {"": stats.commits}
        )
        if stats.by_kind is not None:
            yield _histogram(
                "taskmesh_task_duration_seconds",
                "Task run time on the worker (started to finished), by kind.",
                stats.by_kind,
                label="kind",
            )

    def _queues(self) -> Iterator[Any]:
        book = self.service.book
        depth = GaugeMetricFamily("taskmesh_queue_depth", "Queued tasks by kind.", labels=["kind"])
        by_kind: Counter[str] = Counter()
        for (kind, _), queue in book.queues().items():
            by_kind[kind] += len(queue)
        for kind, n in sorted(by_kind.items()):
            depth.add_metric([kind], n)
        yield depth
        waiting = sum(waiting_counts(book, self.service.unmatched.capable()).values())
        yield GaugeMetricFamily(
            "taskmesh_tasks_waiting",
            "Queued tasks no connected worker can run (or held for --expect-workers).",
            value=waiting,
        )

    def _workers(self) -> Iterator[Any]:
        workers = [rec for rec in self.service.admin.registry if rec.capacity > 0]
        states = Counter(str(rec.state) for rec in workers)
        gauge = GaugeMetricFamily("taskmesh_workers", "Task workers by state.", labels=["state"])
        for state in AgentState:
            gauge.add_metric([state], states.get(state, 0))
        yield gauge
        connected = [rec for rec in workers if rec.state == AgentState.CONNECTED]
        slots = GaugeMetricFamily(
            "taskmesh_worker_slots", "Capacity of the connected workers.", labels=["use"]
        )
        slots.add_metric(["total"], sum(rec.capacity for rec in connected))
        slots.add_metric(["busy"], sum(min(len(rec.running), rec.capacity) for rec in connected))
        yield slots

    def _protocol(self) -> Iterator[Any]:
        admin = self.service.admin
        counters = admin.counters
        errors = CounterMetricFamily(
            "taskmesh_protocol_errors", "Refused or failed messages, by kind.", labels=["kind"]
        )
        for key in ERRORS:
            if counters.get(key) or key in ALWAYS:
                errors.add_metric([key], counters.get(key, 0))
        for key, n in sorted(counters.items()):
            if key.startswith("registrations_refused."):
                errors.add_metric([key], n)
        errors.add_metric(["broadcast_gaps"], admin.gaps.missed)
        yield errors
        received = CounterMetricFamily(
            "taskmesh_messages_received", "Messages received, by type.", labels=["type"]
        )
        for key, n in sorted(counters.items()):
            if key.startswith("rx."):
                received.add_metric([key[3:]], n)
        yield received
        yield _counter("taskmesh_journal_commits", "Journal commits.", self.service.store.commits)


def _counter(name: str, doc: str, value: float) -> Any:
    return CounterMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, hists: dict[str, Buckets], label: str = "") -> Any:
    family = HistogramMetricFamily(name, doc, labels=[label] if label else [])
    for key, hist in sorted(hists.items()):
        family.add_metric([key] if label else [], hist.cumulative(), hist.sum)
    return family
