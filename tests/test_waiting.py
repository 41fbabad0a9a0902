"""Answers instead of silence, in-process: a task no connected worker can run says why
(in the submit reply, in ``tasks`` and in ``status``), ``--unmatched fail`` records it
failed, and what ``status`` tells about workers survives a manager restart.

The manager (admin, task service, journal file) runs on an in-memory transport with a
fake clock (``tests.helpers.fakes``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from loguru import logger

from protocol import (
    Drain,
    Finished,
    Ready,
    Register,
    Results,
    StatusReply,
    StatusRequest,
    Submit,
    SubmitReply,
    TaskSpec,
    TasksReply,
    TasksRequest,
    TaskState,
)
from tests.helpers.fakes import ManagerHarness, worker_with_fakes
from tests.test_actions_machine import outcome, purge, report, retry
from tests.test_manager_machine import CLIENT, final, result, submit
from tests.test_manager_security import Ring
from worker.patience import Patience

SKILL_9 = "no worker with skill >= 9 (best: 7)"
NOPE = "no worker runs kind 'nope'"


def states(m: ManagerHarness, *ids: str) -> dict[str, TaskState]:
    m.deliver(CLIENT, TasksRequest(req=7, ids=list(ids)))
    return {s.id: s for s in m.router.to(CLIENT, TasksReply)[-1].tasks}


def status(m: ManagerHarness, worker: str = "") -> StatusReply:
    m.deliver(CLIENT, StatusRequest(req=9, worker=worker))
    return m.router.to(CLIENT, StatusReply)[-1]


def mixed() -> list[TaskSpec]:
    return [
        TaskSpec(id="easy", difficulty=3),
        TaskSpec(id="hard", difficulty=9),
        TaskSpec(id="odd", kind="nope"),
    ]


def test_a_task_no_worker_can_run_says_why_everywhere(mgr: ManagerHarness) -> None:
    mgr.join("w1", skill=7, capacity=2)
    reply = submit(mgr, *mixed())
    assert reply.accepted == ["easy", "hard", "odd"]
    assert reply.unmatched == {"hard": SKILL_9, "odd": NOPE}
    seen = states(mgr, "easy", "hard", "odd")
    assert (seen["easy"].state, seen["easy"].waiting) == ("running", "")
    assert (seen["hard"].state, seen["hard"].waiting) == ("queued", SKILL_9)
    assert (seen["odd"].state, seen["odd"].waiting) == ("queued", NOPE)
    mgr.deliver(CLIENT, TasksRequest(req=8, state="queued"))  # a page says it too
    page = mgr.router.to(CLIENT, TasksReply)[-1].tasks
    assert {s.id: s.waiting for s in page} == {"hard": SKILL_9, "odd": NOPE}
    assert status(mgr).waiting == {SKILL_9: 1, NOPE: 1}
    # A task that only waits for a free slot waits for no reason.
    assert submit(mgr, TaskSpec(id="later", difficulty=2), req=2).unmatched == {}
    # A skilled worker comes: the hard task runs, the odd one still waits.
    mgr.join("w2", skill=9)
    assert states(mgr, "hard")["hard"].state == "running"
    assert status(mgr).waiting == {NOPE: 1}


def test_reasons_follow_the_workers_that_can_take_work(db: Path) -> None:
    mgr = ManagerHarness(db, expect_workers=2)
    try:
        reply = submit(mgr, TaskSpec(id="t", difficulty=2))
        assert reply.unmatched == {"t": "no worker connected"}
        mgr.join("w1", skill=5)
        held = "assignments held until 2 workers connect (1 so far)"
        assert states(mgr, "t")["t"].waiting == held
        mgr.deliver("w1", Drain(grace=1.0))  # a draining worker takes nothing new
        assert states(mgr, "t")["t"].waiting == "no worker connected"
    finally:
        mgr.close()


def test_strongest_runs_too_hard_tasks_but_not_unknown_kinds(db: Path) -> None:
    mgr = ManagerHarness(db, unmatched="strongest")
    try:
        mgr.join("w1", skill=7, capacity=3)
        assert submit(mgr, *mixed()).unmatched == {"odd": NOPE}
        assert states(mgr, "hard")["hard"].state == "running"
    finally:
        mgr.close()


def test_unmatched_fail_records_such_tasks_failed_once_settled(db: Path) -> None:
    mgr = ManagerHarness(db, unmatched="fail")
    try:
        mgr.join("w1", skill=7, capacity=3)
        # Just started: the manager does not know its workers yet, so nothing fails.
        early = submit(mgr, TaskSpec(id="early", difficulty=9))
        assert early.unmatched == {"early": SKILL_9}
        assert states(mgr, "early")["early"].state == "queued"
        mgr.tick(mgr.admin.config.window + 0.5, alive=("w1",))  # settled
        gone = final(mgr, "early")
        assert (gone.status, gone.attempt, gone.worker_id) == ("failed", 0, "")
        assert gone.error is not None
        assert gone.error.message == f"no connected worker can run it: {SKILL_9} (--unmatched fail)"
        # From now on judged at submission, and pushed to a watching submitter.
        mgr.deliver(CLIENT, Submit(req=2, tasks=mixed(), watch=True))
        reply = mgr.router.to(CLIENT, SubmitReply)[-1]
        assert reply.accepted == ["easy", "hard", "odd"]
        assert reply.unmatched == {"hard": SKILL_9, "odd": NOPE}
        pushed = {s.id: s.result for f in mgr.router.to(CLIENT, Finished) for s in f.tasks}
        assert {i: r.status for i, r in pushed.items() if r} == {"hard": "failed", "odd": "failed"}
        assert states(mgr, "easy")["easy"].state == "running"
        now = status(mgr)
        assert (now.counts["failed"], now.counts["queued"], now.waiting) == (3, 0, {})
    finally:
        mgr.close()


def run_tasks(m: ManagerHarness, worker: str, ok: dict[str, bool]) -> None:
    """Submit, and report the results from ``worker`` (capacity for all of them)."""
    submit(m, *(TaskSpec(id=i) for i in ok), req=len(ok))
    results = [result(i, worker, ok=good) for i, good in ok.items()]
    m.deliver(worker, Results(results=results))


def test_worker_totals_survive_a_restart_and_since_joined_does_not(db: Path) -> None:
    mgr = ManagerHarness(db)
    mgr.join("w1", skill=5, capacity=10)
    run_tasks(mgr, "w1", {"a": True, "b": False, "c": True})
    (w,) = status(mgr).workers
    assert (w.completed, w.failed, w.total_completed, w.total_failed) == (3, 1, 3, 1)
    mgr.close()
    again = ManagerHarness(db)  # the same journal
    try:
        again.join("w1", skill=5, capacity=10)
        run_tasks(again, "w1", {"d": False})
        (w,) = status(again).workers
        assert (w.completed, w.failed, w.total_completed, w.total_failed) == (1, 1, 4, 2)
        assert status(again).results == {"succeeded": 2, "failed": 2}
    finally:
        again.close()


def test_status_names_a_workers_host_pid_and_running_tasks(mgr: ManagerHarness) -> None:
    mgr.deliver(
        "w1",
        Register(
            version=1,
            agent_id="w1",
            name="alice",
            workspace_id=mgr.admin.workspace_id,
            skill=5,
            capacity=30,
            kinds=["simulate"],
            host="box-7",
            pid=4242,
        ),
    )
    mgr.tick()
    mgr.deliver("w1", Ready(epoch=mgr.admin.epoch))
    submit(mgr, *(TaskSpec(id=f"t{i:02}") for i in range(25)))
    (w,) = status(mgr).workers
    assert (w.name, w.host, w.pid, w.running) == ("alice", "box-7", 4242, 25)
    assert w.tasks == [f"t{i:02}" for i in range(20)]  # a status lists a bounded prefix
    (one,) = status(mgr, worker="alice").workers  # inspect: by name (or id), every id
    assert one.tasks == [f"t{i:02}" for i in range(25)]
    assert status(mgr, worker="nobody").workers == []


def test_a_worker_registers_with_its_host_and_pid() -> None:
    worker, _, link, clock = worker_with_fakes()
    worker.keep_session(clock())
    (reg,) = link.of(Register)
    assert (reg.host, reg.pid) == (socket.gethostname(), os.getpid())


def test_a_worker_without_a_manager_says_it_still_waits_less_and_less_often() -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    try:
        patience = Patience("w", "127.0.0.1:9")
        for second in range(0, 701):
            patience.waiting(1000.0 + second)
        told = [int(line.split(" after ")[1].split("s")[0]) for line in lines]
        assert told == [5, 10, 20, 40, 80, 160, 320, 620]  # doubling, then every 300 s
        assert "still waiting for a manager at 127.0.0.1:9" in lines[0]
        patience.connected()
        lines.clear()
        for second in range(0, 6):
            patience.waiting(5000.0 + second)
        assert len(lines) == 1  # waiting again starts again at 5 s
    finally:
        logger.remove(sink)


def test_every_attempt_counts_for_its_worker_across_restarts(db: Path) -> None:
    """A retried error, an attempt lost with its worker and a result an operator's retry
    superseded all stay counted for the worker that ran them, also after a restart."""
    mgr = ManagerHarness(db)
    mgr.join("w1", skill=5, capacity=10)
    submit(mgr, TaskSpec(id="a", retries=1, retry_backoff=0.0))
    report(mgr, "w1", outcome("a", "w1", 1, "error"))  # retried
    mgr.tick()
    report(mgr, "w1", outcome("a", "w1", 2))  # final
    submit(mgr, TaskSpec(id="b"), req=2)
    mgr.tick(mgr.admin.config.window * 2 + 0.5)  # w1 silent: lost with b, b re-queued
    mgr.join("w2", skill=5)
    report(mgr, "w2", outcome("b", "w2", 2))
    retry(mgr, "b")  # b's final result joins its history; it runs again on w2
    report(mgr, "w2", outcome("b", "w2", 3, "error"))
    got = {w.id: (w.total_completed, w.total_failed) for w in status(mgr).workers}
    assert got == {"w2": (2, 1)}
    assert status(mgr).counts["reruns"] == 2  # a's retry, b lost with w1
    mgr.close()
    again = ManagerHarness(db)
    try:
        again.join("w1", skill=5)
        again.join("w2", skill=5)
        now = {
            w.id: (w.total_completed, w.total_failed, w.completed) for w in status(again).workers
        }
        assert now == {"w1": (3, 2, 0), "w2": (2, 1, 0)}  # w1: a error, a ok, b lost
    finally:
        again.close()


def test_a_purge_lowers_worker_totals_only_once_the_manager_restarts(db: Path) -> None:
    """What README's status section says: the totals are recounted from the journal at
    start, and purge deletes the tasks and attempts they are counted from."""
    mgr = ManagerHarness(db)
    mgr.join("w1", skill=5, capacity=10)
    submit(mgr, TaskSpec(id="ok"), TaskSpec(id="bad"))
    report(mgr, "w1", outcome("ok", "w1"), outcome("bad", "w1", 1, "failed"))
    totals = {w.id: (w.total_completed, w.total_failed) for w in status(mgr).workers}
    assert totals == {"w1": (2, 1)}
    assert purge(mgr, "failed") == 1
    totals = {w.id: (w.total_completed, w.total_failed) for w in status(mgr).workers}
    assert totals == {"w1": (2, 1)}  # this manager keeps counting what it saw
    mgr.close()
    again = ManagerHarness(db)
    try:
        again.join("w1", skill=5)
        totals = {w.id: (w.total_completed, w.total_failed) for w in status(again).workers}
        assert totals == {"w1": (1, 0)}  # recounted from what the journal still holds
    finally:
        again.close()


def test_status_lists_only_the_askers_own_running_task_ids(tmp_path: Path) -> None:
    ring = Ring(tmp_path / "keys")
    mgr = ManagerHarness(tmp_path / "journal.db", **ring.settings())
    try:
        mgr.join("w1", capacity=4, key=ring.key("w1"))
        mgr.deliver("a", Submit(req=1, tasks=[TaskSpec(id="alices")]), ring.key("alice"))
        mgr.deliver("b", Submit(req=1, tasks=[TaskSpec(id="bobs")]), ring.key("bob"))

        def listed(ident: str, key: str, worker: str = "") -> list[str]:
            mgr.deliver(ident, StatusRequest(req=2, worker=worker), key)
            (info,) = mgr.router.to(ident, StatusReply)[-1].workers
            assert info.running == 2  # the counts are cluster-wide
            return sorted(info.tasks)

        assert listed("a", ring.key("alice")) == ["alices"]
        assert listed("b", ring.key("bob"), worker="w1") == ["bobs"]  # inspect too
        assert listed("o", ring.key("olga")) == ["alices", "bobs"]  # an operator: all
    finally:
        mgr.close()
