"""Process fixtures: real managers and workers on 127.0.0.1 with fast heartbeats.

Every process a test starts is stopped at teardown (SIGTERM, then SIGKILL),
also when the test fails; a failing test shows the tail of each log.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from manager.client import Client
from manager.procs import Proc, spawn, wait_ready

T = TypeVar("T")

FAST = ["--heartbeat-interval", "0.1", "--liveness", "3"]
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Cluster:
    """Starts taskmesh processes for one test and remembers them for teardown."""

    logs: Path
    procs: list[Proc] = field(default_factory=list)
    port: int = 0
    db: Path | None = None
    _count: int = 0

    def manager(self, *args: str, port: int | None = None, db: str | None = None) -> Proc:
        """Start ``python -m manager``; waits until it listens.  Reuses the port on restart."""
        self._count += 1
        ready = self.logs / f"manager-{self._count}.json"
        if db is None:
            self.db = self.db or self.logs / "journal.db"
            db = str(self.db)
        want = port if port is not None else self.port
        proc = spawn(
            f"manager-{self._count}",
            "manager",
            ["--port", str(want), "--db", db, "--ready-file", str(ready), *FAST, *args],
            self.logs,
        )
        self.procs.append(proc)
        info = wait_ready(proc, ready)
        self.port = int(info["endpoint"].rsplit(":", 1)[1])
        return proc

    def worker(self, name: str, skill: int = 5, *args: str) -> Proc:
        proc = spawn(
            f"worker-{name}",
            "worker",
            ["--port", str(self.port), "--name", name, "--skill", str(skill), *FAST, *args],
            self.logs,
            env={"PYTHONPATH": str(REPO)},
        )
        self.procs.append(proc)
        return proc

    def script(self, name: str, path: Path, *args: str) -> Proc:
        proc = spawn(name, "tests.helpers." + path.stem, list(args), self.logs)
        self.procs.append(proc)
        return proc

    def client(self, timeout: float = 5.0) -> Client:
        return Client("127.0.0.1", self.port, timeout=timeout)

    def run(self, coro: Awaitable[T]) -> T:
        return asyncio.run(coro)  # type: ignore[arg-type]

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop(timeout=3)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(logs=tmp_path / "logs")
    c.logs.mkdir()
    try:
        yield c
    finally:
        c.stop_all()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for proc in c.procs:
                # shown by pytest as "Captured stdout teardown" of the failed test
                sys.stdout.write(
                    f"\n--- {proc.name} (exit {proc.popen.returncode}) ---\n{proc.log()}\n"
                )


@pytest.fixture
def unused_port() -> int:
    """A port nothing listens on (bound and released just now)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
