"""Operator actions and automatic retries in the manager, in-process: cancel, retry, purge,
history, and retry-with-backoff, driven message by message with a fake clock over the
production admin, task service and a real journal file (``tests/helpers/fakes.py``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest

from protocol import (
    ActionReply,
    Assign,
    Bye,
    CancelRequest,
    Error,
    ErrorInfo,
    Finished,
    HistoryReply,
    HistoryRequest,
    PurgeReply,
    PurgeRequest,
    ResultAck,
    Results,
    RetryRequest,
    StatusReply,
    StatusRequest,
    Submit,
    TaskResult,
    TaskSpec,
    Withdraw,
)
from protocol.codec import pack, plain
from tests.helpers.fakes import ManagerHarness
from tests.test_manager_security import Ring

CLIENT = "client-1"


def submit(m: ManagerHarness, *specs: TaskSpec, watch: bool = False, key: str = "") -> None:
    m.deliver(CLIENT, Submit(req=1, tasks=list(specs), watch=watch), key)


def outcome(task_id: str, worker: str, attempt: int = 1, status: str = "succeeded") -> TaskResult:
    """A worker's result, made now."""
    ok = status == "succeeded"
    now = time.time()
    return TaskResult(
        task_id=task_id,
        attempt=attempt,
        worker=worker,
        worker_id=worker,
        success=ok,
        status=status,
        output="ok" if ok else None,
        error=None if ok else ErrorInfo(type="ValueError", message="boom"),
        started=now,
        finished=now,
    )


def report(m: ManagerHarness, worker: str, *results: TaskResult) -> None:
    m.deliver(worker, Results(results=list(results)))


def jobs_of(m: ManagerHarness, worker: str) -> list[tuple[str, int]]:
    return [(j.task.id, j.attempt) for a in m.router.to(worker, Assign) for j in a.jobs]


def act(m: ManagerHarness, msg: CancelRequest | RetryRequest, key: str = "") -> ActionReply:
    m.deliver(CLIENT, msg, key)
    return m.router.to(CLIENT, ActionReply)[-1]


def cancel(m: ManagerHarness, *ids: str, key: str = "") -> ActionReply:
    return act(m, CancelRequest(req=7, ids=list(ids)), key)


def retry(m: ManagerHarness, *ids: str, key: str = "") -> ActionReply:
    return act(m, RetryRequest(req=8, ids=list(ids)), key)


def history(m: ManagerHarness, task_id: str, key: str = "") -> HistoryReply:
    m.deliver(CLIENT, HistoryRequest(req=9, id=task_id), key)
    return m.router.to(CLIENT, HistoryReply)[-1]


def purge(m: ManagerHarness, state: str, older_than: float = 0.0) -> int:
    m.deliver(CLIENT, PurgeRequest(req=10, state=state, older_than=older_than))
    return m.router.to(CLIENT, PurgeReply)[-1].purged


def counts(m: ManagerHarness) -> dict[str, int]:
    m.deliver(CLIENT, StatusRequest(req=11))
    return m.router.to(CLIENT, StatusReply)[-1].counts


def final(m: ManagerHarness, task_id: str) -> TaskResult:
    (state,) = m.service.queries.states([task_id])
    assert state.result is not None, state
    return state.result


def journal(db: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(db) as con:
        return {i: (s, st) for i, s, st in con.execute("SELECT id, state, status FROM tasks")}


# --------------------------------------------------------------------------- cancel


def test_cancelling_a_queued_task_records_it_cancelled_at_once(
    mgr: ManagerHarness, db: Path
) -> None:
    submit(mgr, TaskSpec(id="a", difficulty=9), watch=True)  # no worker: it waits
    reply = cancel(mgr, "a")
    assert [(s.id, s.state, s.attempt) for s in reply.acted] == [("a", "done", 0)]
    assert reply.refused == []
    result = final(mgr, "a")
    assert (result.status, result.success) == ("cancelled", False)
    assert result.error == ErrorInfo(type="cancelled", message="cancelled while queued")
    assert journal(db)["a"] == ("done", "cancelled")
    (pushed,) = mgr.router.to(CLIENT, Finished)  # the waiting client hears of it
    assert pushed.tasks[0].result == result
    mgr.join("w1", skill=9)
    assert jobs_of(mgr, "w1") == []  # it never runs


def test_cancelling_a_running_task_withdraws_it_and_frees_the_worker(mgr: ManagerHarness) -> None:
    mgr.join("w1", capacity=1)
    submit(mgr, TaskSpec(id="a"), TaskSpec(id="b"))
    assert jobs_of(mgr, "w1") == [("a", 1)]
    reply = cancel(mgr, "a")
    assert [s.id for s in reply.acted] == ["a"]
    (withdraw,) = mgr.router.to("w1", Withdraw)
    assert [(k.task_id, k.attempt) for k in withdraw.keys] == [("a", 1)]
    assert withdraw.epoch == mgr.admin.epoch
    assert final(mgr, "a").error == ErrorInfo(
        type="cancelled", message="cancelled while running on w1"
    )
    assert jobs_of(mgr, "w1") == [("a", 1), ("b", 1)]  # its slot went to the next task
    # The worker had finished "a" before the withdraw reached it: a duplicate, not recorded.
    report(mgr, "w1", outcome("a", "w1"))
    assert final(mgr, "a").status == "cancelled"
    assert counts(mgr)["duplicates"] == 1
    assert mgr.router.to("w1", ResultAck)[-1].keys[0].task_id == "a"  # acked all the same


def test_cancel_refuses_unknown_and_finished_tasks_by_id(mgr: ManagerHarness) -> None:
    mgr.join("w1")
    submit(mgr, TaskSpec(id="done"), TaskSpec(id="q", difficulty=9))
    report(mgr, "w1", outcome("done", "w1"))
    reply = cancel(mgr, "nope", "done", "q", "q")
    assert [s.id for s in reply.acted] == ["q"]  # a repeated id counts once
    assert [(r.id, r.code) for r in reply.refused] == [("nope", "unknown"), ("done", "bad_state")]
    assert "already done (succeeded)" in reply.refused[1].message
    assert final(mgr, "done").status == "succeeded"


def test_too_many_ids_in_one_action_is_a_bad_request(mgr: ManagerHarness) -> None:
    mgr.deliver(CLIENT, CancelRequest(req=3, ids=[str(i) for i in range(1001)]))
    (error,) = mgr.router.to(CLIENT, Error)
    assert (error.code, error.req) == ("bad_request", 3)


def test_cancelling_a_task_in_its_retry_backoff_drops_it(mgr: ManagerHarness) -> None:
    mgr.join("w1")
    submit(mgr, TaskSpec(id="a", retries=3, retry_backoff=10.0))
    report(mgr, "w1", outcome("a", "w1", status="error"))
    assert counts(mgr)["retrying"] == 1
    assert cancel(mgr, "a").acted[0].id == "a"
    assert final(mgr, "a").error == ErrorInfo(
        type="cancelled", message="cancelled while waiting out a retry backoff"
    )
    assert counts(mgr)["retrying"] == 0
    mgr.tick(11.0, alive=("w1",))
    assert jobs_of(mgr, "w1") == [("a", 1)]  # no second attempt


# --------------------------------------------------------------------------- automatic retries


def test_an_error_is_retried_after_an_exponential_backoff_and_every_attempt_is_kept(
    mgr: ManagerHarness,
) -> None:
    mgr.join("w1")
    submit(mgr, TaskSpec(id="a", retries=2, retry_backoff=1.0), watch=True)
    report(mgr, "w1", outcome("a", "w1", 1, "error"))
    assert mgr.router.to(CLIENT, Finished) == []  # not final
    assert counts(mgr)["retrying"] == 1
    mgr.tick(0.5, alive=("w1",))
    assert jobs_of(mgr, "w1") == [("a", 1)]  # held for its backoff
    mgr.tick(0.5, alive=("w1",))
    assert jobs_of(mgr, "w1") == [("a", 1), ("a", 2)]  # after 1 s
    report(mgr, "w1", outcome("a", "w1", 2, "error"))
    mgr.tick(1.5, alive=("w1",))
    assert jobs_of(mgr, "w1") == [("a", 1), ("a", 2)]  # the second backoff is 2 s
    mgr.tick(0.5, alive=("w1",))
    assert jobs_of(mgr, "w1")[-1] == ("a", 3)
    report(mgr, "w1", outcome("a", "w1", 3, "error"))  # no retries left: final
    assert final(mgr, "a").attempt == 3
    assert len(mgr.router.to(CLIENT, Finished)) == 1
    steps = history(mgr, "a")
    assert [(r.attempt, r.status) for r in steps.attempts] == [(n, "error") for n in (1, 2, 3)]
    assert steps.task.state == "done"
    assert counts(mgr)["retrying"] == 0


def test_a_retry_that_succeeds_is_the_final_result(mgr: ManagerHarness) -> None:
    mgr.join("w1")
    submit(mgr, TaskSpec(id="a", retries=5, retry_backoff=0.0))
    report(mgr, "w1", outcome("a", "w1", 1, "error"))
    mgr.tick()
    report(mgr, "w1", outcome("a", "w1", 2))
    assert (final(mgr, "a").status, final(mgr, "a").attempt) == ("succeeded", 2)
    assert [r.status for r in history(mgr, "a").attempts] == ["error", "succeeded"]


@pytest.mark.parametrize("status", ["failed", "timeout", "no_handler"])
def test_only_errors_are_retried(mgr: ManagerHarness, status: str) -> None:
    mgr.join("w1")
    submit(mgr, TaskSpec(id="a", retries=3, retry_backoff=0.0))
    report(mgr, "w1", outcome("a", "w1", 1, status))
    assert final(mgr, "a").status == status


def test_retries_do_not_count_as_lost_workers(db: Path) -> None:
    m = ManagerHarness(db, max_attempts=2)
    try:
        m.join("w1")
        submit(m, TaskSpec(id="a", retries=1, retry_backoff=0.0))
        report(m, "w1", outcome("a", "w1", 1, "error"))  # retried: attempt 2 next
        m.tick()
        m.deliver("w1", Bye(reason="stopping"))  # loses attempt 2
        m.join("w2")
        assert jobs_of(m, "w2") == [("a", 3)]  # one loss of two allowed: it runs again
        steps = history(m, "a").attempts
        assert [(r.attempt, r.status) for r in steps] == [(1, "error"), (2, "worker_lost")]
        assert "w1 left" in (steps[1].error.message if steps[1].error else "")
    finally:
        m.close()


def test_a_backoff_survives_a_manager_restart(db: Path) -> None:
    first = ManagerHarness(db)
    first.join("w1")
    submit(first, TaskSpec(id="a", retries=1, retry_backoff=30.0))
    report(first, "w1", outcome("a", "w1", 1, "error"))
    first.close()
    second = ManagerHarness(db)
    try:
        second.join("w1")
        second.tick(20.0, alive=("w1",))
        assert jobs_of(second, "w1") == []  # still waiting out what is left of the 30 s
        assert counts(second)["retrying"] == 1
        second.tick(11.0, alive=("w1",))
        assert jobs_of(second, "w1") == [("a", 2)]
    finally:
        second.close()


# --------------------------------------------------------------------------- retry (operator)


def test_retrying_a_finished_task_runs_it_again_and_keeps_its_history(
    mgr: ManagerHarness, db: Path
) -> None:
    mgr.join("w1", capacity=2)
    submit(mgr, TaskSpec(id="a"), TaskSpec(id="b"))
    report(mgr, "w1", outcome("a", "w1", 1, "failed"), outcome("b", "w1"))
    before = counts(mgr)
    reply = retry(mgr, "a")
    assert [(s.id, s.state, s.attempt) for s in reply.acted] == [("a", "queued", 1)]
    assert jobs_of(mgr, "w1")[-1] == ("a", 2)
    assert journal(db)["a"] == ("queued", None)
    assert counts(mgr)["done"] == before["done"] - 1
    report(mgr, "w1", outcome("a", "w1", 2))
    assert final(mgr, "a").attempt == 2
    assert [(r.attempt, r.status) for r in history(mgr, "a").attempts] == [
        (1, "failed"),
        (2, "succeeded"),
    ]
    # A retried task moves to the end of the submission order.
    assert [state.id for _, state in mgr.service.queries.page(0, 10)] == ["b", "a"]


def test_retry_refuses_live_and_unknown_tasks(mgr: ManagerHarness) -> None:
    submit(mgr, TaskSpec(id="q", difficulty=9))
    reply = retry(mgr, "q", "nope")
    assert reply.acted == []
    assert [(r.id, r.code) for r in reply.refused] == [("q", "bad_state"), ("nope", "unknown")]
    assert "only a finished task can be retried" in reply.refused[0].message


def test_a_retried_task_gets_a_fresh_budget_of_lost_workers(db: Path) -> None:
    m = ManagerHarness(db, max_attempts=1)
    try:
        m.join("w1")
        submit(m, TaskSpec(id="a"))
        m.deliver("w1", Bye(reason="stopping"))
        assert final(m, "a").status == "worker_lost"
        retry(m, "a")
        m.join("w2")
        assert jobs_of(m, "w2") == [("a", 2)]
    finally:
        m.close()


# --------------------------------------------------------------------------- purge


def test_purge_forgets_finished_tasks_by_result_and_age(mgr: ManagerHarness, db: Path) -> None:
    mgr.join("w1", capacity=3)
    submit(
        mgr, TaskSpec(id="ok"), TaskSpec(id="bad"), TaskSpec(id="err", retries=1, retry_backoff=0)
    )
    report(mgr, "w1", outcome("ok", "w1"), outcome("bad", "w1", status="failed"))
    report(mgr, "w1", outcome("err", "w1", status="error"))
    mgr.tick()
    report(mgr, "w1", outcome("err", "w1", 2, "error"))
    submit(mgr, TaskSpec(id="q", difficulty=9))
    assert purge(mgr, "failed", older_than=3600.0) == 0  # all finished just now
    assert purge(mgr, "failed") == 2
    assert set(journal(db)) == {"ok", "q"}
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM attempts").fetchone() == (0,)
    states = {s.id: s.state for s in mgr.service.queries.states(["ok", "bad", "err", "q"])}
    assert states == {"ok": "done", "bad": "unknown", "err": "unknown", "q": "queued"}
    c = counts(mgr)
    assert (c["done"], c["failed"], c["succeeded"]) == (1, 0, 1)
    submit(mgr, TaskSpec(id="bad"))  # a purged id is new again
    assert jobs_of(mgr, "w1")[-1] == ("bad", 1)


@pytest.mark.parametrize(
    ("state", "older_than"), [("queued", 0.0), ("running", 0.0), ("", 0.0), ("done", -1.0)]
)
def test_purge_refuses_live_states_and_bad_ages(
    mgr: ManagerHarness, state: str, older_than: float
) -> None:
    mgr.deliver(CLIENT, PurgeRequest(req=4, state=state, older_than=older_than))
    (error,) = mgr.router.to(CLIENT, Error)
    assert (error.code, error.req) == ("bad_request", 4)


def test_history_of_an_unknown_task_is_empty(mgr: ManagerHarness) -> None:
    reply = history(mgr, "nope")
    assert (reply.task.state, reply.attempts, reply.omitted) == ("unknown", [], 0)


# --------------------------------------------------------------------------- CURVE owners


def test_with_curve_a_client_acts_on_its_own_tasks_only(tmp_path: Path) -> None:
    ring = Ring(tmp_path / "keys")
    m = ManagerHarness(tmp_path / "journal.db", **ring.settings())
    alice, bob, olga = ring.key("alice"), ring.key("bob"), ring.key("olga")
    try:
        submit(m, TaskSpec(id="a1", difficulty=9), TaskSpec(id="a2", difficulty=9), key=alice)
        assert [r.code for r in cancel(m, "a1", key=bob).refused] == ["unknown"]
        assert history(m, "a1", key=bob).task.state == "unknown"
        assert [s.id for s in cancel(m, "a1", key=alice).acted] == ["a1"]
        assert [r.code for r in retry(m, "a1", key=bob).refused] == ["unknown"]
        m.deliver(CLIENT, PurgeRequest(req=5, state="done"), bob)
        assert m.router.to(CLIENT, PurgeReply)[-1].purged == 0
        assert [s.id for s in cancel(m, "a2", key=olga).acted] == ["a2"]  # an operator
        assert [s.id for s in retry(m, "a1", "a2", key=olga).acted] == ["a1", "a2"]
        m.deliver(CLIENT, CancelRequest(req=6, ids=["a1"]), ring.key("w1"))  # a worker's key
        assert m.router.to(CLIENT, Error)[-1].code == "forbidden"
    finally:
        m.close()


def test_a_journal_from_before_the_history_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    old = outcome("t", "w1", status="failed")
    old = dataclasses.replace(old, started=old.started - 7200, finished=old.finished - 7200)
    with sqlite3.connect(db) as con:
        con.execute(
            "CREATE TABLE tasks (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
            "spec BLOB NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, "
            "worker TEXT NOT NULL DEFAULT '', result BLOB, status TEXT, "
            "owner TEXT NOT NULL DEFAULT '', worker_key TEXT NOT NULL DEFAULT '')"
        )
        con.execute(
            "INSERT INTO tasks VALUES (1, 't', ?, 'done', 1, 'w1', ?, 'failed', '', '')",
            (pack(plain(TaskSpec(id="t"))), pack(plain(old))),
        )
    m = ManagerHarness(db)
    try:
        assert history(m, "t").attempts == [old]
        assert purge(m, "failed", older_than=3600.0) == 1  # its finish time was read
    finally:
        m.close()
