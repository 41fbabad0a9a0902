"""The examples run to completion, by themselves, and show what they claim to show.

Each example runs as its own process on a free port.  loguru logs to stderr;
``skill_routing.py`` prints its results to stdout.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TIMEOUT = 60.0

pytestmark = pytest.mark.slow


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"exit {self.returncode} after {self.seconds:.1f}s\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr[-6000:]}"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_example(name: str) -> Run:
    """Run ``examples/<name>`` to its end; kill it if it outlives ``TIMEOUT``."""
    env = {
        **os.environ,
        "TASKMESH_PORT": str(free_port()),
        "PYTHONPATH": str(REPO),
        "PYTHONIOENCODING": "utf-8",
        "PYTHONUNBUFFERED": "1",
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(
            f"{name} did not finish within {TIMEOUT:.0f}s\n--- stdout ---\n{stdout}\n"
            f"--- stderr ---\n{stderr[-6000:]}"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Run(proc.returncode, stdout, stderr, time.monotonic() - started)


def test_ceylon_port_finishes_but_every_worker_runs_task_1() -> None:
    """The faithful port of Ceylon's tutorial keeps its bug, and still ends by itself.

    ``assign_tasks`` broadcasts every assignment, so each of the three workers
    takes the first one it hears, task 1; tasks 2 and 3 never run.  The
    manager still gets three results (three times task 1) and stops.
    """
    run = run_example("ceylon_task_management.py")
    assert run.returncode == 0, run.describe()
    results = re.findall(r"Task (\d+) - Worker: (\w+) - Status: (Success|Failure)", run.stderr)
    assert len(results) == 3, run.describe()
    assert {task for task, _, _ in results} == {"1"}, run.describe()  # one distinct task
    assert sorted(w for _, w, _ in results) == ["Intermediate", "Junior", "Senior"]
    assert all(status == "Success" for _, _, status in results), run.describe()
    assert "Success rate: 100.00% (3/3)" in run.stderr, run.describe()
    executed = re.findall(r"(\w+) completed task (\d+) with success=True", run.stderr)
    assert sorted(executed) == [("Intermediate", "1"), ("Junior", "1"), ("Senior", "1")]
    assert "Traceback" not in run.stderr, run.describe()


def test_skill_routing_runs_three_tasks_on_three_workers() -> None:
    run = run_example("skill_routing.py")
    assert run.returncode == 0, run.describe()
    results = re.findall(r"^task (\d+) \(.*, difficulty (\d+)\) -> (\w+): (\w+)$", run.stdout, re.M)
    assert sorted(results) == [
        ("1", "2", "Junior", "success"),
        ("2", "5", "Intermediate", "success"),
        ("3", "8", "Senior", "success"),
    ], run.describe()
    assert "3/3 tasks succeeded on 3 distinct workers" in run.stdout, run.describe()
    # Each worker really ran its own task, exactly once, and nothing else.
    executed = re.findall(r"(\w+) completed task (\d+) with success=(\w+)", run.stderr)
    assert sorted(executed) == [
        ("Intermediate", "2", "True"),
        ("Junior", "1", "True"),
        ("Senior", "3", "True"),
    ], run.describe()
    assert "is busy" not in run.stderr, run.describe()
    assert "Traceback" not in run.stderr, run.describe()
