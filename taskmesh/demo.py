"""``taskmesh demo``: the seed scenario, each agent its own OS process."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol import AgentState, ResultStatus, TaskSpec
from taskmesh.client import Client
from taskmesh.procs import Proc, ProcessFailed, spawn, start_manager
from taskmesh.progress import Progress

SEED_TASKS = [
    TaskSpec(id="1", description="Simple calculation", difficulty=2),
    TaskSpec(id="2", description="Data analysis", difficulty=5),
    TaskSpec(id="3", description="Machine learning model training", difficulty=8),
]
SEED_WORKERS = [("Junior", 3), ("Intermediate", 6), ("Senior", 9)]


def run_demo(
    *, time_scale: float, policy: str, log: Callable[[str], None], progress: bool = True
) -> dict[str, Any]:
    """Start a manager and three workers, run the three seed tasks, stop everything.

    With ``progress``, the wait for the tasks shows on stderr: a bar on a terminal,
    a plain line per finished task elsewhere.
    """
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="taskmesh-demo-") as tmp:
        logs = Path(tmp)
        try:
            return _run(logs, procs, time_scale, policy, log, progress)
        except (ProcessFailed, TimeoutError, ConnectionError) as exc:
            for proc in procs:
                log(f"--- {proc.name} log ---\n{proc.log()}")
            raise SystemExit(f"demo failed: {exc}") from None
        finally:
            for proc in procs:
                proc.stop()


def _run(
    logs: Path,
    procs: list[Proc],
    time_scale: float,
    policy: str,
    log: Callable[[str], None],
    progress: bool,
) -> dict[str, Any]:
    launched = time.monotonic()
    args = ["--db", ":memory:", "--expect-workers", str(len(SEED_WORKERS))]
    args += ["--policy", policy, "--heartbeat-interval", "0.5"]
    manager, port = start_manager("manager", args, logs)
    procs.append(manager)
    log(f"manager listening on 127.0.0.1:{port} (pid {manager.pid})")
    for name, skill in SEED_WORKERS:
        proc = spawn(
            name.lower(),
            "worker",
            [
                "--port",
                str(port),
                "--name",
                name,
                "--skill",
                str(skill),
                "--time-scale",
                str(time_scale),
                "--heartbeat-interval",
                "0.5",
            ],
            logs,
        )
        procs.append(proc)
        log(f"worker {name} (skill {skill}) started (pid {proc.pid})")
    return asyncio.run(_drive(port, procs, launched, log, progress))


async def _drive(
    port: int, procs: list[Proc], launched: float, log: Callable[[str], None], progress: bool
) -> dict[str, Any]:
    async with Client("127.0.0.1", port) as client:
        connected_at = await _wait_for_workers(client, procs, len(SEED_WORKERS))
        log(f"{len(SEED_WORKERS)} workers connected after {connected_at - launched:.2f}s")
        await client.submit(SEED_TASKS)
        shown = Progress(len(SEED_TASKS), every=5.0, each=True) if progress else None
        try:
            states = await client.wait([t.id for t in SEED_TASKS], timeout=120, progress=shown)
        finally:
            if shown is not None:
                shown.close()
    succeeded = sum(1 for s in states if s.result is not None and s.result.success)
    return {
        "tasks": states,
        ResultStatus.SUCCEEDED: succeeded,  # a count keyed like status counts
        "success_rate": succeeded / len(states),
        "distinct_workers": len({s.result.worker for s in states if s.result}),
        "connect_seconds": connected_at - launched,
        "seconds": time.monotonic() - launched,
        "processes": [{"name": p.name, "pid": p.pid} for p in procs],
    }


async def _wait_for_workers(client: Client, procs: list[Proc], count: int) -> float:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise ProcessFailed(f"{proc.name} exited with {proc.popen.returncode}")
        status = await client.status()
        if sum(1 for w in status.workers if w.state == AgentState.CONNECTED) >= count:
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{count} workers did not connect within 30s")
