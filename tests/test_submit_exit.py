"""What scripts rely on: submit --wait's exit codes and output, and progress fit for its stream."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from taskmesh.cli import main
from taskmesh.progress import Progress
from tests.conftest import Cluster
from tests.helpers.ops import HANDLERS, connected, wait_until


def submit(cluster: Cluster, tmp_path: Path, tasks: list[dict[str, Any]], *args: str) -> Result:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(tasks))
    port = str(cluster.port)
    return CliRunner().invoke(main, ["submit", str(path), "--wait", "--port", port, *args])


def test_exit_1_when_a_task_fails_and_the_error_is_in_the_table(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.manager()
    cluster.worker("w", 5, *HANDLERS, "--capacity", "2")
    wait_until(connected(cluster, 1), what="worker")
    result = submit(
        cluster, tmp_path, [{"id": "ok", "kind": "noop"}, {"id": "bad", "kind": "fail"}]
    )
    assert result.exit_code == 1, result.output
    assert "1 of 2 task(s) did not succeed" in result.output
    assert "task bad always fails" in result.output


def test_exit_3_on_timeout_prints_what_finished_and_what_is_pending(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.manager()
    cluster.worker("w", 5, "--capacity", "2")
    wait_until(connected(cluster, 1), what="worker")
    tasks: list[dict[str, Any]] = [
        {"id": "quick", "kind": "noop"},
        {"id": "slow", "kind": "sleep", "payload": 30},
    ]
    # Long enough for a no-op on a connected worker; the 30 s sleep never makes it.
    result = submit(cluster, tmp_path, tasks, "--timeout", "0.5", "--json")
    assert result.exit_code == 3, result.output
    answer = json.loads(result.stdout)
    assert [s["id"] for s in answer["results"]] == ["quick"]
    assert answer["pending"] == ["slow"]
    assert "1 task(s) not done within 0.5s" in result.stderr


def test_exit_4_when_the_manager_refuses_or_is_gone(
    cluster: Cluster, tmp_path: Path, unused_port: int
) -> None:
    cluster.manager("--max-queued", "1")
    result = submit(cluster, tmp_path, [{"id": "a"}, {"id": "b"}])
    assert result.exit_code == 4, result.output
    assert "busy" in result.output
    gone = CliRunner().invoke(main, ["status", "--port", str(unused_port), "--timeout", "0.3"])
    assert gone.exit_code == 4
    assert "no reply from the manager" in gone.output


def test_resubmitting_known_ids_says_so(cluster: Cluster, tmp_path: Path) -> None:
    cluster.manager()
    cluster.worker("w", 5)
    wait_until(connected(cluster, 1), what="worker")
    assert submit(cluster, tmp_path, [{"id": "a", "kind": "noop"}]).exit_code == 0
    again = submit(cluster, tmp_path, [{"id": "a", "kind": "noop"}])
    assert again.exit_code == 0
    assert "1 task(s) already known: a" in again.stderr


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_into_a_file_is_a_few_plain_lines() -> None:
    out = io.StringIO()
    progress = Progress(1000, stream=out, every=0.0)
    for done in range(0, 1001, 100):
        progress(done, done // 10, 1000)
    progress.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 1 <= len(lines) <= 12
    assert lines[-1].startswith("1,000/1,000 tasks done, 100 failed")


def test_progress_on_a_terminal_is_a_live_bar_with_failures() -> None:
    out = Tty()
    progress = Progress(10, stream=out)
    progress(4, 1, 10)
    progress(10, 2, 10)
    progress.close()
    text = out.getvalue()
    assert "\r" in text  # rewritten in place
    assert "10/10" in text
    assert "failed 2" in text


def test_results_filter_limit_and_csv(cluster: Cluster, tmp_path: Path) -> None:
    cluster.manager()
    cluster.worker("w", 5, *HANDLERS, "--capacity", "4")
    wait_until(connected(cluster, 1), what="worker")
    tasks = [{"id": f"ok{i}", "kind": "noop"} for i in range(3)]
    tasks += [{"id": f"bad{i}", "kind": "fail"} for i in range(2)]
    assert submit(cluster, tmp_path, tasks).exit_code == 1
    port = ["--port", str(cluster.port)]
    failed = CliRunner().invoke(main, ["results", "--state", "failed", "--format", "csv", *port])
    assert failed.exit_code == 0, failed.output
    rows = list(csv.reader(io.StringIO(failed.stdout)))
    assert rows[0][0] == "id"
    assert [r[0] for r in rows[1:]] == ["bad0", "bad1"]
    assert all("always fails" in r[-1] for r in rows[1:])
    some = CliRunner().invoke(main, ["results", "--limit", "2", "--format", "json", *port])
    assert [t["id"] for t in json.loads(some.stdout)] == ["ok0", "ok1"]
