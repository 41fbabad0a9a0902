"""Placement end to end: skill matching, waiting for a capable worker, capacity, policies."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from protocol import TaskSpec, TaskState
from tests.conftest import Cluster
from tests.helpers.ops import (
    HANDLERS,
    connected,
    running_on,
    status,
    submit,
    wait_done,
    wait_until,
)


def max_overlap(states: list[TaskState]) -> int:
    """Most tasks that ran at the same moment, from their start and finish times."""
    edges = []
    for s in states:
        assert s.result is not None
        edges += [(s.result.started, 1), (s.result.finished, -1)]
    level = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    return peak


def test_task_waits_for_a_capable_worker(cluster: Cluster) -> None:
    cluster.manager()
    cluster.worker("weak", 3, "--time-scale", "0.01")
    wait_until(connected(cluster, 1), what="weak worker")
    submit(cluster, [TaskSpec(id="hard", difficulty=8)])
    time.sleep(0.3)  # three heartbeats: the weak worker is not given it meanwhile
    assert running_on(cluster, "hard") == ""
    assert status(cluster).counts["queued"] == 1
    cluster.worker("strong", 9, "--time-scale", "0.01")
    (state,) = wait_done(cluster, ["hard"])
    assert state.result is not None
    assert state.result.worker == "strong"
    assert state.result.success


def test_unmatched_strongest_runs_and_records_the_failure(cluster: Cluster) -> None:
    cluster.manager("--unmatched", "strongest")
    cluster.worker("weak", 3, "--time-scale", "0.01")
    cluster.worker("mid", 6, "--time-scale", "0.01")
    wait_until(connected(cluster, 2), what="2 workers")
    submit(cluster, [TaskSpec(id="hard", difficulty=8)])
    (state,) = wait_done(cluster, ["hard"])
    assert state.result is not None
    assert state.result.worker == "mid"
    assert state.result.status == "failed"
    assert not state.result.success
    assert state.result.error is not None
    assert "below difficulty 8" in state.result.error.message


def test_worker_never_runs_more_than_its_capacity(cluster: Cluster) -> None:
    cluster.manager()
    cluster.worker("w", 5, *HANDLERS, "--capacity", "3")
    wait_until(connected(cluster, 1), what="worker")
    ids = submit(cluster, [TaskSpec(id=f"c{i}", kind="sleep", payload=0.3) for i in range(9)])
    states = wait_done(cluster, ids)
    assert 1 < max_overlap(states) <= 3  # concurrent, never beyond the capacity


@pytest.mark.parametrize(
    ("policy", "expected"), [("best-fit", {"low"}), ("least-loaded", {"low", "high"})]
)
def test_policies_spread_work_as_documented(
    cluster: Cluster, policy: str, expected: set[str]
) -> None:
    cluster.manager("--policy", policy)
    cluster.worker("low", 5, *HANDLERS, "--capacity", "4")
    cluster.worker("high", 9, *HANDLERS, "--capacity", "4")
    wait_until(connected(cluster, 2), what="2 workers")
    ids = submit(
        cluster, [TaskSpec(id=f"p{i}", kind="sleep", payload=0.2, difficulty=2) for i in range(4)]
    )
    states = wait_done(cluster, ids)
    assert {s.result.worker for s in states if s.result} == expected


def test_submit_beyond_max_queued_is_refused_busy(cluster: Cluster, tmp_path: object) -> None:
    cluster.manager("--max-queued", "5")
    ids = submit(cluster, [TaskSpec(id=f"q{i}") for i in range(5)])
    assert len(ids) == 5
    proc = subprocess.run(
        [sys.executable, "-m", "taskmesh", "submit", "-", "--port", str(cluster.port)],
        input='[{"id": "one-too-many"}]',
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "busy" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert status(cluster).counts["queued"] == 5


def test_killed_client_loses_nothing(cluster: Cluster) -> None:
    cluster.manager()
    cluster.worker("w", 5, *HANDLERS, "--capacity", "4")
    wait_until(connected(cluster, 1), what="worker")
    tasks = ",".join(f'{{"id": "k{i}", "kind": "sleep", "payload": 0.2}}' for i in range(8))
    client = subprocess.Popen(
        [sys.executable, "-m", "taskmesh", "submit", "-", "--wait", "--port", str(cluster.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert client.stdin is not None
        client.stdin.write(f"[{tasks}]")
        client.stdin.close()
        wait_until(lambda: status(cluster).counts["running"] > 0, what="tasks running")
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    states = wait_done(cluster, [f"k{i}" for i in range(8)])
    assert all(s.result is not None and s.result.success for s in states)


def test_second_sigint_forces_exit(cluster: Cluster) -> None:
    cluster.manager()
    w = cluster.worker("w", 5, *HANDLERS, "--grace", "60")
    wait_until(connected(cluster, 1), what="worker")
    submit(cluster, [TaskSpec(id="long", kind="sleep", payload=60)])
    wait_until(lambda: running_on(cluster, "long") != "", what="task running")
    w.signal(signal.SIGINT)
    wait_until(lambda: "draining 1 task(s)" in w.log(), what="drain started")
    assert w.alive()  # the first interrupt drains: the task still has 60 s to go
    w.signal(signal.SIGINT)
    assert w.popen.wait(5) == 130
