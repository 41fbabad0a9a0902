"""Operator actions end to end: a real manager and workers, the real ``taskmesh`` commands.

cancel (a queued task; a running one, also of a process kind, whose process is killed),
retry (a failed task runs again; its history is kept), retries with backoff (counted and
spaced by the recorded attempts' own times, never by how fast the run was), and purge.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from protocol import ActionReply, HistoryReply, TaskSpec
from taskmesh.cli import main
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
from tests.test_json_views import validator


def taskmesh(cluster: Cluster, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--port", str(cluster.port)])


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def history(cluster: Cluster, task_id: str) -> HistoryReply:
    async def go() -> HistoryReply:
        async with cluster.client() as c:
            return await c.history(task_id)

    return cluster.run(go())


def cancel(cluster: Cluster, *ids: str) -> ActionReply:
    async def go() -> ActionReply:
        async with cluster.client() as c:
            return await c.cancel(ids)

    return cluster.run(go())


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie not yet reaped counts)."""
    return Path(f"/proc/{pid}").exists()


def test_cancel_a_queued_and_a_running_task(cluster: Cluster) -> None:
    cluster.manager()
    cluster.worker("a", 5, *HANDLERS, "--capacity", "1")
    wait_until(connected(cluster, 1), what="worker")
    submit(
        cluster,
        [TaskSpec(id="run", kind="hang"), TaskSpec(id="wait", difficulty=9)],  # 9: nobody can
    )
    wait_until(lambda: running_on(cluster, "run") != "", what="run running")
    result = taskmesh(cluster, "cancel", "wait", "run", "--json")
    assert result.exit_code == 0, result.output
    view = as_json(result)
    validator("action.json").validate(view)
    assert view == {
        "acted": [
            {"id": "wait", "state": "done", "attempt": 0},
            {"id": "run", "state": "done", "attempt": 1},
        ],
        "refused": [],
    }
    states = {s.id: s.result for s in wait_done(cluster, ["wait", "run"])}
    assert {i: r.status for i, r in states.items() if r} == {
        "wait": "cancelled",
        "run": "cancelled",
    }
    running = states["run"]
    assert running is not None
    assert running.error is not None
    assert running.error.message == "cancelled while running on a"
    # The cancelled attempt keeps the worker it ran on; a task that never ran has none.
    shown = taskmesh(cluster, "results", "run", "wait", "--format", "csv")
    assert shown.exit_code == 0, shown.output
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(shown.stdout))}
    assert (rows["run"]["worker"], rows["run"]["skill"]) == ("a", "5")
    assert (rows["wait"]["worker"], rows["wait"]["skill"]) == ("", "")
    # The worker's only slot is free again: the next task runs there at once.
    submit(cluster, [TaskSpec(id="next", kind="echo", payload=1)])
    (after,) = wait_done(cluster, ["next"], timeout=10)
    assert after.result is not None
    assert after.result.success
    # Nothing is left to cancel, and an unknown id is named.
    again = taskmesh(cluster, "cancel", "run", "nope")
    assert again.exit_code == 1
    assert "task 'run' is already done (cancelled): nothing to cancel" in again.stderr
    assert "nope: no task 'nope'" in again.stderr
    counts = status(cluster).counts
    assert counts["duplicates"] == 0  # the worker sent no result for the withdrawn attempt
    assert counts["tasks_cancelled"] == 2


@pytest.mark.parametrize("pool", ["0", "1"])
def test_cancelling_a_running_process_kind_kills_its_process(
    cluster: Cluster, tmp_path: Path, pool: str
) -> None:
    cluster.manager()
    cluster.worker("p", 5, *HANDLERS, "--process-pool", pool)
    wait_until(connected(cluster, 1), what="worker")
    pid_file = tmp_path / "pid"
    submit(cluster, [TaskSpec(id="cpu", kind="pid_hang_proc", payload=str(pid_file))])
    wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", what="task process")
    pid = int(pid_file.read_text())
    assert alive(pid)
    reply = cancel(cluster, "cpu")
    assert [s.id for s in reply.acted] == ["cpu"]
    wait_until(lambda: not alive(pid), timeout=10, what=f"task process {pid} killed")
    # The worker goes on running that kind (with a pool: in a fresh process).
    submit(cluster, [TaskSpec(id="who", kind="whoami_proc")])
    (who,) = wait_done(cluster, ["who"])
    assert who.result is not None
    assert who.result.success
    assert who.result.output["pid"] != pid


def test_retry_a_failed_task(cluster: Cluster) -> None:
    cluster.manager()
    cluster.worker("a", 5, *HANDLERS)
    wait_until(connected(cluster, 1), what="worker")
    submit(cluster, [TaskSpec(id="f", kind="flaky"), TaskSpec(id="w", difficulty=9)])
    (first,) = wait_done(cluster, ["f"])
    assert first.result is not None
    assert first.result.status == "error"
    result = taskmesh(cluster, "retry", "f", "--json")
    assert result.exit_code == 0, result.output
    assert as_json(result)["acted"] == [{"id": "f", "state": "queued", "attempt": 1}]
    (second,) = wait_done(cluster, ["f"])
    assert second.result is not None
    assert (second.result.status, second.result.attempt) == ("succeeded", 2)
    assert second.result.output == "ok on attempt 2"
    shown = taskmesh(cluster, "history", "f", "--json")
    assert shown.exit_code == 0, shown.output
    (view,) = as_json(shown)
    validator("history.json").validate(view)
    assert [(a["attempt"], a["status"]) for a in view["attempts"]] == [
        (1, "error"),
        (2, "succeeded"),
    ]
    text = taskmesh(cluster, "history", "f")
    assert "task f: done, 2 attempt(s)" in text.stdout
    assert "RuntimeError: first attempts fail" in text.stdout
    refused = taskmesh(cluster, "retry", "w", "nope")
    assert refused.exit_code == 1
    assert "only a finished task can be retried" in refused.stderr
    assert "nope: no task 'nope'" in refused.stderr
    assert taskmesh(cluster, "history", "nope").exit_code == 1


def test_retries_back_off_exponentially_as_the_recorded_attempts_show(cluster: Cluster) -> None:
    cluster.manager()
    cluster.worker("a", 5, *HANDLERS, "--capacity", "2")
    wait_until(connected(cluster, 1), what="worker")
    backoff = 0.2
    submit(
        cluster,
        [
            TaskSpec(id="busy", kind="busy", retries=3, retry_backoff=backoff),
            TaskSpec(id="flaky", kind="flaky", retries=2, retry_backoff=backoff),
        ],
    )
    done = {s.id: s.result for s in wait_done(cluster, ["busy", "flaky"])}
    busy, flaky = done["busy"], done["flaky"]
    assert busy is not None
    assert busy.error is not None
    assert (busy.status, busy.attempt, busy.error.type) == ("error", 4, "Retry")
    assert flaky is not None
    assert (flaky.status, flaky.attempt) == ("succeeded", 2)
    attempts = history(cluster, "busy").attempts
    assert [(r.attempt, r.status, r.error.type if r.error else "") for r in attempts] == [
        (n, "error", "Retry") for n in (1, 2, 3, 4)
    ]
    assert [r.error.message for r in attempts if r.error] == [
        f"busy on attempt {n}" for n in (1, 2, 3, 4)
    ]
    for k in (1, 2, 3):  # the k-th retry waited at least backoff * 2^(k-1) after the error
        waited = attempts[k].started - attempts[k - 1].finished
        assert waited >= backoff * 2 ** (k - 1), (k, waited)
    assert [r.status for r in history(cluster, "flaky").attempts] == ["error", "succeeded"]


def test_purge_finished_tasks(cluster: Cluster) -> None:
    cluster.manager()
    cluster.worker("a", 5, *HANDLERS, "--capacity", "3")
    wait_until(connected(cluster, 1), what="worker")
    tasks = [TaskSpec(id=i, kind="echo") for i in ("ok1", "ok2")] + [
        TaskSpec(id="bad", kind="fail")
    ]
    submit(cluster, tasks)
    wait_done(cluster, ["ok1", "ok2", "bad"])
    submit(cluster, [TaskSpec(id="waiting", difficulty=9)])
    recent = taskmesh(cluster, "purge", "--state", "failed", "--older-than", "1h")
    assert (recent.exit_code, recent.stdout) == (0, "purged 0 task(s)\n")
    result = taskmesh(cluster, "purge", "--state", "failed", "--json")
    assert result.exit_code == 0, result.output
    view = as_json(result)
    validator("purge.json").validate(view)
    assert view == {"purged": 1, "state": "failed", "older_than": 0.0}
    listed = as_json(taskmesh(cluster, "results", "--json"))
    assert {t["id"]: t["state"] for t in listed} == {
        "ok1": "done",
        "ok2": "done",
        "waiting": "queued",
    }
    counts = status(cluster).counts
    assert (counts["done"], counts["succeeded"], counts["failed"]) == (2, 2, 0)
    assert taskmesh(cluster, "purge", "--state", "queued").exit_code == 2  # never live tasks
    assert submit(cluster, [TaskSpec(id="bad", kind="echo")]) == ["bad"]  # a new task again


def test_cancelling_while_results_race_in_records_every_task_once(cluster: Cluster) -> None:
    """Cancels cross results on the wire: a task whose result was recorded first is refused
    (already done); one cancelled first keeps ``cancelled`` even when its worker's result
    arrives after (a counted duplicate).  Every task ends with exactly one final result."""
    cluster.manager()
    for name in ("a", "b"):
        cluster.worker(name, 5, *HANDLERS, "--capacity", "4")
    wait_until(connected(cluster, 2), what="workers")
    ids = [f"t{i}" for i in range(60)]
    submit(
        cluster, [TaskSpec(id=i, kind="sleep", payload=0.02 * (n % 5)) for n, i in enumerate(ids)]
    )
    wait_until(lambda: status(cluster).counts["done"] >= 5, what="some done")
    reply = cancel(cluster, *ids)
    cancelled = {s.id for s in reply.acted}
    refused = {r.id: r.code for r in reply.refused}
    assert cancelled | set(refused) == set(ids)
    assert set(refused.values()) == {"bad_state"}  # finished before the cancel: left alone
    final = {s.id: s.result for s in wait_done(cluster, ids)}
    assert {i for i, r in final.items() if r and r.status == "cancelled"} == cancelled
    assert {i for i, r in final.items() if r and r.success} == set(refused)
    counts = status(cluster).counts
    assert counts["done"] == len(ids)
    assert counts["tasks_cancelled"] == len(cancelled)
    # Nothing recorded later changes a final result.
    assert {s.id: s.result for s in wait_done(cluster, ids)} == final
