"""The CLI: bad arguments and bad task files get a clear message and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Cluster


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
        (["worker", "--skill", "3"], "--name"),
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
