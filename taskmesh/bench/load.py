"""taskmesh under load: throughput, single-task round trips, CPU and memory per process.

``run_load`` starts a manager and worker processes on 127.0.0.1 (or uses a
running cluster given its address), submits the tasks in pipelined batches,
waits for their pushed results, and reads each local process's CPU time and
memory from ``/proc`` before and after.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import AgentState, TaskSpec
from taskmesh.bench.procstat import cpu_seconds, rss_mb
from taskmesh.client import Client, ProgressFn
from taskmesh.procs import Proc, spawn, start_manager
from taskmesh.progress import Progress

JOURNALS = ("memory", "file", "fsync")
#: Tasks submitted (and built) per step, and steps in flight at once: the bench never
#: holds every spec at once, and the manager's live tasks stay bounded as a real
#: producer's would (memory is then measured against history, not a backlog).
TASKS_PER_STEP = 10_000
IN_FLIGHT = 4


@dataclass(frozen=True)
class Load:
    """One experiment: what to run and on what."""

    tasks: int = 50_000
    workers: int = 2
    capacity: int = 100
    journal: str = "memory"
    duration: float = 0.0  # seconds a task sleeps (0: the no-op kind)
    payload: int = 0  # bytes of payload per task
    difficulty: str = "1"  # a number 1-10, or "mix" (1-10 in turn)
    #: Built-in kinds with their weights, in turn (``(("echo", 3), ("noop", 1))``: three echo
    #: tasks then one noop, over and over); empty: sleep with a duration, echo with a payload,
    #: else noop.
    kinds: tuple[tuple[str, int], ...] = ()
    trips: int = 500  # single-task round trips measured after the run
    host: str = ""  # a running manager to use instead of starting one
    port: int = 0


@dataclass
class Outcome:
    """What one run measured; ``None``: not measured (a process the bench did not start)."""

    tasks: int
    seconds: float
    statuses: dict[str, int]
    workers: int = 0  # connected when the timed run began
    tasks_per_s: float = 0.0
    manager_us_per_task: float | None = None
    worker_us_per_task: float | None = None
    client_us_per_task: float = 0.0
    manager_peak_rss_mb: float | None = None
    worker_peak_rss_mb: float | None = None
    manager_rss_growth_mb_per_100k: float | None = None
    #: Each started worker: ``name``, ``us_per_task`` (its CPU over all tasks), ``peak_rss_mb``.
    per_worker: list[dict[str, Any]] | None = None
    status_ms: float = 0.0
    rtt_us: dict[str, float] = field(default_factory=dict)


class Local:
    """The processes a run started (none when it used a running cluster)."""

    def __init__(self) -> None:
        self.manager: Proc | None = None
        self.workers: list[Proc] = []

    @property
    def procs(self) -> list[Proc]:
        return [p for p in [self.manager, *self.workers] if p is not None]


@contextmanager
def cluster(load: Load) -> Iterator[tuple[Local, str, int]]:
    """Start a manager and ``load.workers`` workers (or none for a given address); stop them."""
    local = Local()
    if load.host:
        yield local, load.host, load.port
        return
    with tempfile.TemporaryDirectory(prefix="taskmesh-bench-") as tmp:
        logs = Path(tmp)
        db = {"memory": [":memory:"], "file": [f"{tmp}/journal.db"], "fsync": [f"{tmp}/j.db"]}
        args = ["--log-level", "WARNING", "--db", *db[load.journal]]
        if load.journal == "fsync":
            args.append("--fsync")
        try:
            local.manager, port = start_manager("manager", args, logs)
            for n in range(load.workers):
                wargs = ["--port", str(port), "--name", f"w{n}", "--skill", "10"]
                wargs += ["--time-scale", str(load.duration)]  # simulate: difficulty x duration
                wargs += ["--capacity", str(load.capacity), "--log-level", "WARNING"]
                local.workers.append(spawn(f"w{n}", "worker", wargs, logs))
            yield local, "127.0.0.1", port
        finally:
            for proc in local.procs:
                proc.stop()


def kinds(load: Load) -> dict[str, int]:
    """The kinds ``load`` submits, each with its weight."""
    if load.kinds:
        return dict(load.kinds)
    return {"sleep" if load.duration > 0 else ("echo" if load.payload else "noop"): 1}


def specs(load: Load, start: int, count: int, prefix: str) -> list[TaskSpec]:
    """Tasks ``start`` .. ``start + count - 1``, their kinds in turn by weight.

    ``sleep``'s payload is its number of seconds (PROTOCOL.md §9.3.6), so a
    sleep task carries its ``load.payload`` bytes in ``description`` instead:
    they travel to the worker and into the journal, not back in the result.
    Other kinds carry them as their payload (echo returns it; noop and
    simulate ignore it; simulate takes difficulty x ``load.duration`` seconds).
    """
    turn = [kind for kind, weight in kinds(load).items() for _ in range(weight)]
    data = "x" * load.payload if load.payload else None
    out = []
    for i in range(start, start + count):
        kind = turn[i % len(turn)]
        difficulty = 1 + i % 10 if load.difficulty == "mix" else int(load.difficulty)
        sleep = kind == "sleep"
        out.append(
            TaskSpec(
                id=f"{prefix}{i}",
                kind=kind,
                difficulty=difficulty,
                payload=load.duration if sleep else data,
                description=data or "" if sleep else "",
            )
        )
    return out


async def _connected(client: Client, want: int, timeout: float = 60.0) -> int:
    """Wait until at least ``want`` workers are connected; return how many are."""
    deadline = time.monotonic() + timeout
    while True:
        count = sum(w.state == AgentState.CONNECTED for w in (await client.status()).workers)
        if count >= want:
            return count
        if time.monotonic() > deadline:
            raise TimeoutError(f"{want} workers did not connect within {timeout:.0f}s")
        await asyncio.sleep(0.05)


async def _push(
    client: Client, load: Load, total: int, prefix: str, progress: Chunks
) -> Counter[str]:
    """Submit ``total`` tasks in pipelined chunks while waiting for them all."""
    tally: Counter[str] = Counter()
    waits: list[asyncio.Future[Counter[str]]] = []
    for start in range(0, total, TASKS_PER_STEP):
        if len(waits) >= IN_FLIGHT:
            tally.update(await waits.pop(0))
        chunk = specs(load, start, min(TASKS_PER_STEP, total - start), prefix)
        await client.submit(chunk, watch=True, brief=True)
        ids = [s.id for s in chunk]
        waits.append(asyncio.ensure_future(client.count(ids, progress=progress.step())))
    for counted in await asyncio.gather(*waits):
        tally.update(counted)
    return tally


class Chunks:
    """One progress over the waits of every chunk (each reports its own done and failed)."""

    def __init__(self, total: int, report: ProgressFn | None) -> None:
        self.total = total
        self.report = report
        self.done = 0
        self.failed = 0

    def step(self) -> ProgressFn:
        last_done = last_failed = 0

        def update(done: int, failed: int, _total: int) -> None:
            nonlocal last_done, last_failed
            self.done += done - last_done
            self.failed += failed - last_failed
            last_done, last_failed = done, failed
            if self.report is not None:
                self.report(self.done, self.failed, self.total)

        return update


async def _measure(load: Load, local: Local, host: str, port: int, show: bool) -> Outcome:
    async with Client(host, port, timeout=60) as client:
        await _connected(client, load.workers)
        warm = min(max(load.tasks // 50, 500), 5000)  # lets the manager learn the kind is short
        await _push(client, load, warm, "warm-", Chunks(warm, None))
        workers = await _connected(client, load.workers)
        before = {p.pid: cpu_seconds(p.pid) for p in local.procs}
        me = os.getpid()
        before[me] = cpu_seconds(me)
        rss_before = rss_mb(local.manager.pid) if local.manager else 0.0
        bar = Progress(load.tasks) if show else None
        started = time.perf_counter()
        try:
            statuses = await _push(client, load, load.tasks, "t-", Chunks(load.tasks, bar))
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - started
        outcome = Outcome(
            tasks=load.tasks, seconds=seconds, statuses=dict(statuses), workers=workers
        )
        outcome.client_us_per_task = (cpu_seconds(me) - before[me]) / load.tasks * 1e6
        outcome.tasks_per_s = load.tasks / seconds
        if local.manager is not None:
            manager = local.manager.pid
            outcome.manager_us_per_task = (
                (cpu_seconds(manager) - before[manager]) / load.tasks * 1e6
            )
            outcome.manager_peak_rss_mb = rss_mb(manager, peak=True)
            growth = rss_mb(manager) - rss_before
            outcome.manager_rss_growth_mb_per_100k = growth / load.tasks * 100_000
        if local.workers:
            outcome.per_worker = [
                {
                    "name": w.name,
                    "us_per_task": (cpu_seconds(w.pid) - before[w.pid]) / load.tasks * 1e6,
                    "peak_rss_mb": rss_mb(w.pid, peak=True),
                }
                for w in local.workers
            ]
            outcome.worker_us_per_task = sum(w["us_per_task"] for w in outcome.per_worker)
            outcome.worker_peak_rss_mb = max(w["peak_rss_mb"] for w in outcome.per_worker)
        t = time.perf_counter()
        await client.status()
        outcome.status_ms = (time.perf_counter() - t) * 1000
        outcome.rtt_us = await round_trips(client, load)
        return outcome


async def round_trips(client: Client, load: Load) -> dict[str, float]:
    """Single tasks one after another through the public ``Client``: submit, wait, repeat."""
    if load.trips <= 0:
        return {}
    times = []
    for i in range(load.trips + load.trips // 10):
        spec = TaskSpec(id=f"rtt-{i}", kind="noop")
        t = time.perf_counter()
        await client.run(spec, timeout=30)
        times.append((time.perf_counter() - t) * 1e6)
    times = sorted(times[load.trips // 10 :])  # the first tenth warms up
    return {f"p{p}": times[min(len(times) - 1, len(times) * p // 100)] for p in (50, 95, 99)}


def run_load(load: Load, show: bool = False) -> Outcome:
    """Run ``load`` (starting and stopping its processes) and measure it.

    ``show``: progress of the timed run on stderr (a bar on a terminal, plain lines elsewhere).
    """
    if load.journal not in JOURNALS:
        raise ValueError(f"journal must be one of {', '.join(JOURNALS)}")
    with cluster(load) as (local, host, port):
        return asyncio.run(_measure(load, local, host, port, show))
