"""The CLI: bad arguments and bad task files get a clear message and a non-zero exit."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manager.procs import spawn
from tests.conftest import FAST, Cluster


def taskmesh(
    *args: str, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "manager.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["worker", "--name", "x", "--skill", "11"], "--skill"),
        (["worker", "--name", "x", "--skill", "abc"], "--skill"),
        (["worker", "--name", "x"], "--skill"),
        (["worker", "--name", "x", "--skill", "3", "--capacity", "0"], "--capacity"),
        (["manager", "--port", "70000"], "--port"),
        (["manager", "--policy", "random"], "--policy"),
        (["status", "--port", "-1"], "--port"),
        (["submit"], "FILE"),
        (["nonsense"], "No such command"),
    ],
)
def test_bad_arguments(args: list[str], needle: str) -> None:
    assert_clean_error(taskmesh(*args), needle)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("not json", "not valid JSON"),
        ('{"a": 1}', "expected a JSON list"),
        ("[]", "empty"),
        ('[{"id": 1, "difficulty": 11}]', "task #1"),
        ('[{"id": 1}, {"id": 1}]', "duplicate id"),
        ('[{"id": 1, "difficulty": "hard"}]', "difficulty"),
        ('[{"id": 1, "colour": "red"}]', "unknown field"),
        ('[{"description": "no id"}]', "missing field 'id'"),
        ("[3]", "expected an object"),
    ],
)
def test_bad_task_files(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(content)
    assert_clean_error(taskmesh("submit", str(path), "--port", "1"), needle)


def test_missing_task_file() -> None:
    assert_clean_error(taskmesh("submit", "/nonexistent/tasks.json"), "No such file")


def test_no_manager_is_a_clear_error(unused_port: int) -> None:
    proc = taskmesh("status", "--port", str(unused_port), "--log-level", "ERROR", timeout=30)
    assert_clean_error(proc, "no reply from the manager", str(unused_port))


def test_manager_port_in_use_is_a_clear_error(cluster: Cluster) -> None:
    cluster.manager()
    proc = taskmesh("manager", "--port", str(cluster.port), "--db", ":memory:")
    assert_clean_error(proc, "cannot listen", str(cluster.port))


def test_submit_wait_status_results(cluster: Cluster, tmp_path: Path) -> None:
    cluster.manager()
    cluster.worker("solo", 5, "--time-scale", "0.01")
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps([{"id": i, "difficulty": 1 + i % 5} for i in range(6)]))
    port = str(cluster.port)
    out = taskmesh("submit", str(tasks), "--wait", "--json", "--port", port, "--timeout", "30")
    assert out.returncode == 0, out.stderr
    states = json.loads(out.stdout)
    assert sorted(s["id"] for s in states) == [str(i) for i in range(6)]
    assert all(s["state"] == "done" and s["result"]["success"] for s in states)
    # Submitting the same ids again is idempotent: nothing new is accepted.
    again = taskmesh("submit", "-", "--json", "--port", port, stdin=tasks.read_text())
    assert json.loads(again.stdout) == {"accepted": [], "known": [str(i) for i in range(6)]}
    status = json.loads(taskmesh("status", "--json", "--port", port).stdout)
    assert [w["name"] for w in status["workers"]] == ["solo"]
    assert status["counts"]["done"] == 6
    assert status["counts"]["succeeded"] == 6
    assert status["counts"]["journal_commits"] > 0
    table = taskmesh("results", "--port", port)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:2] == ["id", "description"]
    assert len(table.stdout.splitlines()) == 2 + 6
    human = taskmesh("status", "--port", port).stdout
    assert "solo" in human
    assert "policy best-fit" in human


def test_options_come_from_environment(cluster: Cluster) -> None:
    cluster.manager()
    proc = subprocess.run(
        [sys.executable, "-m", "manager.cli", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**__import__("os").environ, "TASKMESH_PORT": str(cluster.port)},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["policy"] == "best-fit"


def test_status_check_needs_an_answer_and_workers(cluster: Cluster, unused_port: int) -> None:
    gone = taskmesh("status", "--check", "--port", str(unused_port), "--log-level", "ERROR")
    assert_clean_error(gone, "no reply from the manager")
    cluster.manager()
    port = str(cluster.port)
    alone = taskmesh("status", "--check", "--port", port)
    assert_clean_error(alone, "fewer than 1 worker(s) connected")
    answering = taskmesh("status", "--check", "--min-workers", "0", "--port", port)
    assert answering.returncode == 0, answering.stderr
    assert "0 worker(s) connected" in answering.stdout
    # A worker started without --name is named after its host (in a container: its id).
    cluster.procs.append(
        spawn("worker-unnamed", "worker", ["--port", port, "--skill", "2", *FAST], cluster.logs)
    )
    deadline = time.monotonic() + 20
    while (ok := taskmesh("status", "--check", "--port", port)).returncode != 0:
        assert time.monotonic() < deadline, ok.stderr
        time.sleep(0.2)
    assert "1 worker(s) connected" in ok.stdout
    status = json.loads(taskmesh("status", "--json", "--port", port).stdout)
    assert [w["name"] for w in status["workers"]] == [socket.gethostname()]


def test_manager_binds_bind_not_host(cluster: Cluster) -> None:
    # TASKMESH_HOST is the workers' and clients' view; --bind (TASKMESH_BIND) wins for the
    # manager, so an image can bind every interface while its tools talk to 127.0.0.1.
    cluster.manager("--host", "192.0.2.1", "--bind", "127.0.0.1")
    proc = taskmesh("status", "--check", "--min-workers", "0", "--port", str(cluster.port))
    assert proc.returncode == 0, proc.stderr
