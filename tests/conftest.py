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

from runtime.keys import CurveClient
from taskmesh.client import Client
from taskmesh.procs import Proc, spawn, start_manager
from tests.helpers.fakes import ManagerHarness

T = TypeVar("T")

FAST = ["--heartbeat-interval", "0.1", "--liveness", "3"]
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Cluster:
    """Starts taskmesh processes for one test and remembers them for teardown."""

    logs: Path
    procs: list[Proc] = field(default_factory=list)
    port: int = 0
    #: The CURVE keys ``client()`` connects with (a manager started with --secret-key).
    curve: CurveClient | None = None
    _count: int = 0

    def manager(self, *args: str) -> Proc:
        """Start ``python -m manager`` on the cluster's journal; waits until it listens.

        A restarted manager gets the port the first one bound, as in production.
        """
        self._count += 1
        db = str(self.logs / "journal.db")
        proc, self.port = start_manager(
            f"manager-{self._count}", ["--db", db, *FAST, *args], self.logs, self.port
        )
        self.procs.append(proc)
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

    def script(self, name: str, module: str, *args: str) -> Proc:
        """Run ``python -m tests.helpers.<module> args``."""
        proc = spawn(name, "tests.helpers." + module, list(args), self.logs)
        self.procs.append(proc)
        return proc

    def client(self, timeout: float = 5.0) -> Client:
        return Client("127.0.0.1", self.port, timeout=timeout, curve=self.curve)

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
def db(tmp_path: Path) -> Path:
    """Where an in-process manager keeps its journal."""
    return tmp_path / "journal.db"


@pytest.fixture
def mgr(db: Path) -> Iterator[ManagerHarness]:
    """The manager's whole logic in process: a fake transport and a fake clock."""
    harness = ManagerHarness(db)
    yield harness
    harness.close()


@pytest.fixture
def unused_port() -> int:
    """A port nothing listens on (bound and released just now)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
