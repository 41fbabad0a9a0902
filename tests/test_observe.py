"""What an operator reads, end to end against real processes: ``status``, ``inspect``,
waiting reasons from ``submit`` and ``results``, ``--unmatched fail``, ``status --watch``
with and without a terminal, the Prometheus metrics and the status page's JSON.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import zmq
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

import manager.metrics
from protocol import TaskSpec
from taskmesh.cli import main
from taskmesh.procs import Proc
from tests.conftest import REPO, Cluster
from tests.helpers.ops import HANDLERS, connected, submit, wait_done, wait_until
from tests.test_json_views import validator

HARD = "no worker with skill >= 9 (best: 5)"


def taskmesh(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def metrics_url(cluster: Cluster) -> str:
    """The HTTP address the last manager wrote to its ready file."""
    ready = sorted(cluster.logs.glob("manager-*.ready.json"))[-1]
    url: str = json.loads(ready.read_text())["metrics"]
    return url


def fetch(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.headers["Content-Type"], answer.read()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` by name and labels."""
    _, body = fetch(url + "/metrics")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def busy(cluster: Cluster, tmp_path: Path) -> tuple[Proc, str]:
    """A manager with metrics and one worker that has run 6 tasks well, 2 badly, runs one
    (``slow``) and cannot run another (``hard``); returns the worker and the port."""
    cluster.manager("--metrics-port", "0")
    alice = cluster.worker("alice", 5, *HANDLERS, "--capacity", "4")
    wait_until(connected(cluster, 1), what="alice")
    port = str(cluster.port)
    tasks: list[dict[str, Any]] = [{"id": f"ok-{i}", "kind": "noop"} for i in range(6)]
    tasks += [{"id": f"bad-{i}", "kind": "fail"} for i in range(2)]
    tasks += [{"id": "slow", "kind": "sleep", "payload": 60}, {"id": "hard", "difficulty": 9}]
    out = taskmesh("submit", "-", "--port", port, stdin=json.dumps(tasks))
    assert out.exit_code == 0, out.output
    assert f"warning: 1 task(s) unmatched, {HARD}: hard" in out.stderr
    wait_done(cluster, [t["id"] for t in tasks[:8]])
    wait_until(lambda: "slow" in taskmesh("inspect", "alice", "--port", port).stdout, what="slow")
    return alice, port


def test_status_and_inspect_read_as_sections(cluster: Cluster, busy: tuple[Proc, str]) -> None:
    alice, port = busy
    text = taskmesh("status", "--port", port)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert "tasks" in lines
    assert "  queued     1  1 of them waiting (below)" in lines
    assert "  running    1" in lines
    assert "  succeeded  6" in lines
    assert "  failed     2  error 2" in lines
    assert any(line.startswith("  75.0% of 8 succeeded; ") for line in lines)
    assert f"  1 waiting: {HARD}" in lines
    (row,) = [line for line in lines if line.startswith("alice ")]
    for cell in (socket.gethostname(), str(alice.pid), "1: slow", "8 (2)", "connected"):
        assert cell in row, (cell, row)
    assert "rx.submit" not in text.stdout  # protocol counters only when asked
    manager_id = json.loads(taskmesh("status", "--json", "--port", port).stdout)["manager"]["id"]
    assert lines[0].startswith("manager manager, policy best-fit, up ")
    assert manager_id not in text.stdout  # the internal id only when asked
    verbose = taskmesh("status", "--verbose", "--port", port).stdout
    assert verbose.startswith(f"manager manager ({manager_id}), policy best-fit, up ")
    assert "counters (epoch" in verbose
    assert "rx.submit" in verbose

    one = taskmesh("inspect", "alice", "--port", port)
    assert one.exit_code == 0, one.output
    assert one.stdout.startswith("worker alice (alice-")
    assert f"  pid           {alice.pid}" in one.stdout
    assert "  since joined  8 done, 2 failed" in one.stdout
    assert "  in total      8 done, 2 failed (75.0% succeeded)" in one.stdout
    running = one.stdout.split("running tasks\n")[1].splitlines()
    assert any(line.startswith("slow ") for line in running)
    as_json = json.loads(taskmesh("inspect", "alice", "--json", "--port", port).stdout)
    validator("worker.json").validate(as_json)
    assert (as_json["tasks"], as_json["pid"], as_json["total_failed"]) == (["slow"], alice.pid, 2)
    nobody = taskmesh("inspect", "nobody", "--port", port)
    assert nobody.exit_code == 1
    assert "no worker 'nobody'" in nobody.output

    done = taskmesh("results", "--state", "succeeded", "--format", "csv", "--port", port)
    assert done.exit_code == 0, done.output
    assert sorted(line.split(",")[0] for line in done.stdout.splitlines()[1:]) == [
        f"ok-{i}" for i in range(6)
    ]
    results = taskmesh("results", "hard", "--port", port).stdout
    assert f"waiting: {HARD}" in results
    (task,) = json.loads(taskmesh("results", "hard", "--json", "--port", port).stdout)
    validator("task.json").validate(task)
    assert (task["state"], task["waiting"]) == ("queued", HARD)


def test_metrics_and_the_status_page_count_the_run(cluster: Cluster, busy: object) -> None:
    url = metrics_url(cluster)
    got = scrape(url)
    assert sample(got, "taskmesh_results_total", status="succeeded") == 6
    assert sample(got, "taskmesh_results_total", status="error") == 2
    assert sample(got, "taskmesh_tasks", state="queued") == 1
    assert sample(got, "taskmesh_tasks", state="running") == 1
    assert sample(got, "taskmesh_assignments_total") == 9
    for why in ("lost", "retry", "operator"):
        assert sample(got, "taskmesh_reruns_total", why=why) == 0
    assert sample(got, "taskmesh_cancellations_total") == 0
    assert sample(got, "taskmesh_workers", state="connected") == 1
    assert sample(got, "taskmesh_queue_depth", kind="simulate") == 1
    assert sample(got, "taskmesh_tasks_waiting") == 1
    assert sample(got, "taskmesh_task_duration_seconds_count", kind="noop") == 6
    assert sample(got, "taskmesh_task_duration_seconds_count", kind="fail") == 2
    assert sample(got, "taskmesh_task_duration_seconds_bucket", kind="noop", le="+Inf") == 6
    assert sample(got, "taskmesh_journal_commit_seconds_count") > 0
    assert sample(got, "taskmesh_protocol_errors_total", kind="bad_messages") == 0
    with zmq.Context() as ctx, ctx.socket(zmq.DEALER) as junk:  # one undecodable message
        junk.connect(f"tcp://127.0.0.1:{cluster.port}")
        junk.send(b"\xc1 not msgpack")
        assert junk.poll(5000), "the manager answers junk with an error"
    after = scrape(url)
    assert sample(after, "taskmesh_protocol_errors_total", kind="bad_messages") == 1

    kind, page = fetch(url + "/")
    assert kind.startswith("text/html")
    assert b"fetch(u" in page
    assert b"status.json" in page
    assert b"history.json" in page
    kind, body = fetch(url + "/status.json")
    assert kind == "application/json"
    status = json.loads(body)
    validator("status.json").validate(status)
    assert {k: status["tasks"][k] for k in ("queued", "running", "succeeded", "failed")} == {
        "queued": 1,
        "running": 1,
        "succeeded": 6,
        "failed": 2,
    }
    assert status["tasks"]["waiting"] == {HARD: 1}
    assert [w["name"] for w in status["workers"]] == ["alice"]
    history = json.loads(fetch(url + "/history.json")[1])
    assert history["interval"] == 1.0
    wait_until(lambda: json.loads(fetch(url + "/history.json")[1])["samples"][-1]["done"] == 8)
    with pytest.raises(urllib.error.HTTPError) as missing:
        fetch(url + "/nothing-here")
    assert missing.value.code == 404
    missing.value.close()


def test_unmatched_fail_fails_at_once(cluster: Cluster) -> None:
    cluster.manager("--unmatched", "fail")
    cluster.worker("low", 3)
    wait_until(connected(cluster, 1), what="low")
    time.sleep(0.4)  # the manager has been up for a liveness window (0.3 s): it judges
    tasks = [{"id": "easy", "difficulty": 2}, {"id": "hard", "difficulty": 9}]
    args = ("submit", "-", "--wait", "--port", str(cluster.port), "--timeout", "20")
    out = taskmesh(*args, "--json", stdin=json.dumps(tasks))
    assert out.exit_code == 1, out.output
    answer = json.loads(out.stdout)
    validator("submission.json").validate(answer)
    assert answer["unmatched"] == {"hard": "no worker with skill >= 9 (best: 3)"}
    by_id = {t["id"]: t["result"] for t in answer["results"]}
    assert by_id["easy"]["status"] == "succeeded"
    assert by_id["hard"]["status"] == "failed"
    assert "no connected worker can run it" in by_id["hard"]["error"]["message"]


def frames(out: bytes) -> int:
    """Frames ``status --watch`` printed into a pipe: each starts with a ``--- `` line."""
    return out.count(b"\n--- ") + out.startswith(b"--- ")


def test_status_watch_refreshes_in_place_on_a_terminal_only(cluster: Cluster) -> None:
    cluster.manager()
    command = [sys.executable, "-m", "taskmesh", "status", "--watch", "--interval", "0.2"]
    command += ["--port", str(cluster.port)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Into a pipe: frames appended, each under a timestamp line, until Ctrl-C (exit 0).
    piped = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert piped.stdout is not None
    early = b""
    try:  # until three frames are out (at most 15 s), then Ctrl-C
        deadline = time.monotonic() + 15
        while frames(early) < 3 and time.monotonic() < deadline:
            if select.select([piped.stdout], [], [], 0.5)[0]:
                chunk = os.read(piped.stdout.fileno(), 65536)
                if not chunk:
                    break
                early += chunk
    finally:
        piped.send_signal(signal.SIGINT)
        out, _ = piped.communicate(timeout=10)
    assert piped.returncode == 0, early + out
    text = (early + out).decode()
    assert frames(text.encode()) >= 3, text
    assert "\x1b[" not in text
    # On a terminal: redrawn in place (cursor home, lines cleared), no timestamp lines.
    leader, follower = os.openpty()
    tty = subprocess.Popen(command, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 15
        while seen.count(b"\x1b[H") < 3 and time.monotonic() < deadline:
            seen += os.read(leader, 65536)
    finally:
        tty.send_signal(signal.SIGINT)
        assert tty.wait(timeout=10) == 0
        os.close(leader)
    assert seen.count(b"\x1b[H") >= 3
    assert b"\x1b[K" in seen
    assert b"--- " not in seen
    assert b"workers (0 connected)" in seen


def test_metrics_port_needs_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager.metrics, "AVAILABLE", False)
    out = taskmesh("manager", "--metrics-port", "0", "--port", "0", "--db", ":memory:")
    assert out.exit_code == 1
    assert "--metrics-port needs prometheus-client: pip install 'taskmesh[metrics]'" in out.output


def test_metrics_port_in_use_is_a_clear_error(unused_port: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", unused_port))
        taken.listen()
        out = taskmesh(
            "manager", "--metrics-port", str(unused_port), "--port", "0", "--db", ":memory:"
        )
    assert out.exit_code == 1
    assert f"cannot serve metrics on 127.0.0.1:{unused_port}" in out.output


def test_the_status_page_numbers_follow_tasks_submitted_in_python(cluster: Cluster) -> None:
    cluster.manager("--metrics-port", "0")
    submit(cluster, [TaskSpec(id="lonely", kind="nope")])
    status = json.loads(fetch(metrics_url(cluster) + "/status.json")[1])
    assert status["tasks"]["waiting"] == {"no worker connected": 1}
    assert status["workers"] == []


def test_metric_counters_never_go_down_on_purge_or_retry(cluster: Cluster) -> None:
    cluster.manager("--metrics-port", "0")
    url, port = metrics_url(cluster), str(cluster.port)
    submit(cluster, [TaskSpec(id=f"c{i}", difficulty=9) for i in range(3)])  # no worker: queued
    assert taskmesh("cancel", "c0", "c1", "c2", "--port", port).exit_code == 0
    first = scrape(url)
    assert sample(first, "taskmesh_cancellations_total") == 3
    assert sample(first, "taskmesh_results_total", status="cancelled") == 3
    assert taskmesh("retry", "c0", "--port", port).exit_code == 0  # queued again
    purged = taskmesh("purge", "--state", "cancelled", "--port", port)
    assert (purged.exit_code, purged.stdout) == (0, "purged 2 task(s)\n")
    after = scrape(url)
    assert sample(after, "taskmesh_cancellations_total") == 3
    assert sample(after, "taskmesh_results_total", status="cancelled") == 3
    # What the journal still holds is a gauge, and says so.
    assert sample(after, "taskmesh_tasks_done", status="cancelled") == 0
    assert sample(after, "taskmesh_tasks", state="queued") == 1
    assert taskmesh("cancel", "c0", "--port", port).exit_code == 0
    assert sample(scrape(url), "taskmesh_cancellations_total") == 4


def json_records(text: str) -> list[dict[str, Any]]:
    """loguru's serialized records among a process's output lines."""
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line)["record"])
    return records


def test_json_logs_carry_the_task_and_the_worker(cluster: Cluster) -> None:
    logs = ("--log-format", "json", "--log-level", "DEBUG")
    manager = cluster.manager(*logs)
    alice = cluster.worker("alice", 5, *HANDLERS, *logs)
    wait_until(connected(cluster, 1), what="alice")
    submit(cluster, [TaskSpec(id="traced", kind="noop")])
    wait_done(cluster, ["traced"])
    wait_until(lambda: '"task": "traced"' in alice.log(200_000), what="the worker's task line")
    on_manager = json_records(manager.log(200_000))
    assert on_manager, manager.log()
    about = [r for r in on_manager if r["extra"].get("task") == "traced"]
    assert about, [r["message"] for r in on_manager]
    assert all(r["extra"]["worker"] == "alice" for r in about)
    assert "traced" in about[-1]["message"]
    joined = [r for r in on_manager if r["message"].startswith("alice connected")]
    assert [r["extra"].get("worker") for r in joined] == ["alice"]
    (ran,) = [r for r in json_records(alice.log(200_000)) if r["extra"].get("task") == "traced"]
    assert (ran["extra"]["worker"], ran["extra"]["agent"]) == ("alice", "alice")
