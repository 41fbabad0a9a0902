"""The manager's state machines in-process: admin + task service + a real journal file,
driven message by message over an in-memory transport with a fake clock.

These are the reliability rules of ARCHITECTURE.md at the level of single
messages; the end-to-end tests prove the same wiring with real processes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from protocol import (
    PROTOCOL_VERSION,
    Assign,
    Drain,
    Error,
    Finished,
    Heartbeat,
    Left,
    Ready,
    Register,
    ResultAck,
    ResultKey,
    Results,
    ResultStatus,
    StatusReply,
    StatusRequest,
    Submit,
    SubmitReply,
    TaskResult,
    TaskSpec,
    TasksReply,
    TasksRequest,
    TaskStatus,
    Watch,
    WatchReply,
)
from tests.helpers.fakes import ManagerHarness

CLIENT = "client-1"


def submit(m: ManagerHarness, *specs: TaskSpec, req: int = 1) -> SubmitReply:
    m.deliver(CLIENT, Submit(req=req, tasks=list(specs)))
    return m.router.to(CLIENT, SubmitReply)[-1]


def result(task_id: str, worker: str, attempt: int = 1, ok: bool = True) -> TaskResult:
    return TaskResult(
        task_id=task_id,
        attempt=attempt,
        worker=worker,
        worker_id=worker,
        success=ok,
        status=ResultStatus.SUCCEEDED if ok else ResultStatus.FAILED,
        output={"ok": ok},
    )


def jobs_of(m: ManagerHarness, worker: str) -> list[tuple[str, int]]:
    return [(j.task.id, j.attempt) for a in m.router.to(worker, Assign) for j in a.jobs]


def journal_rows(db: Path) -> dict[str, tuple[str, int]]:
    """What another process reading the journal sees: committed rows only."""
    with sqlite3.connect(db) as con:
        return {i: (s, a) for i, s, a in con.execute("SELECT id, state, attempt FROM tasks")}


def final(m: ManagerHarness, task_id: str) -> TaskResult:
    """The recorded final result of ``task_id`` (it must have one)."""
    (view,) = m.service.queries.states([task_id])
    assert view.result is not None
    return view.result


def worker_state(m: ManagerHarness, worker: str) -> str:
    """``worker``'s state as ``status`` reports it."""
    m.deliver(CLIENT, StatusRequest(req=99))
    reply = m.router.to(CLIENT, StatusReply)[-1]
    return next(w.state for w in reply.workers if w.id == worker)


def state(m: ManagerHarness, task_id: str) -> str:
    (view,) = m.service.queries.states([task_id])
    return view.state


# --------------------------------------------------------------------------- durability


def test_submission_is_acknowledged_only_after_its_commit(mgr: ManagerHarness, db: Path) -> None:
    mgr.handle(CLIENT, Submit(req=7, tasks=[TaskSpec(id="a")]))
    assert mgr.router.to(CLIENT, SubmitReply) == []  # handled, not yet committed: no reply
    assert journal_rows(db) == {}
    mgr.flush()
    assert journal_rows(db) == {"a": ("queued", 0)}
    (reply,) = mgr.router.to(CLIENT, SubmitReply)
    assert (reply.req, reply.accepted) == (7, ["a"])


def test_result_is_acknowledged_only_after_its_commit(mgr: ManagerHarness, db: Path) -> None:
    mgr.join("w1")
    submit(mgr, TaskSpec(id="a", difficulty=2))
    assert jobs_of(mgr, "w1") == [("a", 1)]
    mgr.handle("w1", Results(results=[result("a", "w1")]))
    assert mgr.router.to("w1", ResultAck) == []
    assert journal_rows(db)["a"][0] != "done"
    mgr.flush()
    assert journal_rows(db)["a"] == ("done", 1)
    (ack,) = mgr.router.to("w1", ResultAck)
    assert ack.keys == [ResultKey(task_id="a", attempt=1)]


def test_resubmitting_a_known_id_accepts_nothing(mgr: ManagerHarness) -> None:
    submit(mgr, TaskSpec(id="a"))
    reply = submit(mgr, TaskSpec(id="a"), TaskSpec(id="b"), req=2)
    assert reply.accepted == ["b"]
    assert [s.id for s in reply.known] == ["a"]


# --------------------------------------------------------------------------- placement


def test_each_task_goes_to_exactly_one_capable_worker(mgr: ManagerHarness) -> None:
    for name, skill in (("junior", 3), ("mid", 6), ("senior", 9)):
        mgr.join(name, skill=skill)
    submit(mgr, *(TaskSpec(id=str(d), difficulty=d) for d in (2, 5, 8)))
    assert jobs_of(mgr, "junior") == [("2", 1)]
    assert jobs_of(mgr, "mid") == [("5", 1)]
    assert jobs_of(mgr, "senior") == [("8", 1)]


def test_a_worker_never_holds_more_than_its_capacity(mgr: ManagerHarness) -> None:
    mgr.join("w1", capacity=2)
    submit(mgr, *(TaskSpec(id=f"t{i}") for i in range(5)))
    assert jobs_of(mgr, "w1") == [("t0", 1), ("t1", 1)]
    mgr.deliver("w1", Results(results=[result("t0", "w1")]))
    assert jobs_of(mgr, "w1")[-1] == ("t2", 1)
    assert len(mgr.admin.registry.get("w1").running) == 2  # type: ignore[union-attr]


def test_a_draining_worker_gets_no_new_work(mgr: ManagerHarness) -> None:
    mgr.join("w1", capacity=4)
    mgr.deliver("w1", Drain(grace=30))
    submit(mgr, TaskSpec(id="a"))
    assert jobs_of(mgr, "w1") == []
    assert state(mgr, "a") == TaskStatus.QUEUED


def test_expected_workers_hold_assignments_until_they_come_or_the_timeout(db: Path) -> None:
    m = ManagerHarness(db, expect_workers=2, expect_timeout=10.0)
    try:
        m.join("w1")
        submit(m, TaskSpec(id="a"))
        assert jobs_of(m, "w1") == []
        m.deliver(CLIENT, StatusRequest(req=9))
        assert m.router.to(CLIENT, StatusReply)[-1].counts["awaiting_workers"] == 1
        m.tick(10.5, alive=("w1",))  # the second worker never came: assign anyway
        assert jobs_of(m, "w1") == [("a", 1)]
    finally:
        m.close()


# --------------------------------------------------------------------------- loss


def test_a_silent_worker_is_lost_and_its_task_runs_elsewhere(mgr: ManagerHarness) -> None:
    mgr.join("w1")
    submit(mgr, TaskSpec(id="a"))
    mgr.join("w2")
    assert jobs_of(mgr, "w1") == [("a", 1)]
    mgr.tick(3.5, alive=("w2",))  # w1 says nothing for the window: unreachable, keeps a
    assert jobs_of(mgr, "w2") == []
    mgr.tick(3.0, alive=("w2",))  # and for the grace (one more window): lost
    assert "w1" not in mgr.admin.registry
    assert jobs_of(mgr, "w2") == [("a", 2)]
    # w1's late result is not recorded: the task belongs to w2's attempt now.
    mgr.deliver("w2", Results(results=[result("a", "w2", attempt=2)]))
    assert final(mgr, "a").worker == "w2"


def test_a_worker_that_cannot_be_sent_to_registers_again_when_back(mgr: ManagerHarness) -> None:
    mgr.join("w1")
    mgr.router.unreachable.add("w1")  # its connection is gone: sends to it fail
    submit(mgr, TaskSpec(id="a"))  # the assignment is lost
    assert worker_state(mgr, "w1") == "unreachable"
    assert state(mgr, "a") == TaskStatus.RUNNING  # kept for the grace
    mgr.router.unreachable.clear()
    mgr.deliver("w1", Heartbeat(epoch=mgr.admin.epoch, time=0))  # back: asked to register
    assert mgr.router.to("w1", Error)[-1].code == "unknown_peer"
    assert worker_state(mgr, "w1") == "connected"
    mgr.join("w1")  # holding nothing: the task it never got runs again
    assert jobs_of(mgr, "w1") == [("a", 2)]


def test_a_worker_whose_connection_is_gone_gets_no_grace(mgr: ManagerHarness) -> None:
    mgr.join("w1")
    mgr.join("w2")
    submit(mgr, TaskSpec(id="a"))
    assert jobs_of(mgr, "w1") == [("a", 1)]
    mgr.router.unreachable.add("w1")  # its process died: the connection is closed
    mgr.tick(1.0, alive=("w2",))  # the heartbeat to it fails
    assert worker_state(mgr, "w1") == "unreachable"
    mgr.tick(2.5, alive=("w2",))  # silent past the window: lost, no grace
    assert "w1" not in mgr.admin.registry
    assert jobs_of(mgr, "w2") == [("a", 2)]


def test_a_worker_silent_for_the_window_keeps_its_tasks_when_heard_again(
    mgr: ManagerHarness,
) -> None:
    mgr.join("w1")
    mgr.join("w2")
    submit(mgr, TaskSpec(id="a"), TaskSpec(id="b"))
    assert jobs_of(mgr, "w1") == [("a", 1)]
    mgr.tick(3.5, alive=("w2",))  # w1 silent past the window, not past the grace
    assert worker_state(mgr, "w1") == "unreachable"
    assert worker_state(mgr, "w2") == "connected"
    mgr.deliver("w2", Results(results=[result("b", "w2")]))
    submit(mgr, TaskSpec(id="c"), req=2)
    assert jobs_of(mgr, "w1") == [("a", 1)]  # no new work while unreachable
    assert jobs_of(mgr, "w2")[-1] == ("c", 1)
    mgr.deliver("w1", Heartbeat(epoch=mgr.admin.epoch, time=0))
    assert worker_state(mgr, "w1") == "connected"
    assert mgr.router.to("w1", Error) == []  # nothing was lost: no need to register again
    mgr.tick(5.0, alive=("w1", "w2"))
    mgr.deliver("w1", Results(results=[result("a", "w1")]))
    assert final(mgr, "a").attempt == 1
    assert final(mgr, "a").worker == "w1"


def test_no_one_is_told_of_an_unreachable_worker_until_it_is_lost(mgr: ManagerHarness) -> None:
    mgr.join("w1")
    mgr.join("w2")
    mgr.tick(3.5, alive=("w2",))
    assert not any(isinstance(m, Left) for m in mgr.router.published)
    assert mgr.admin.get_agent_by_id("w1") is not None  # no on_agent_disconnected yet
    mgr.tick(3.0, alive=("w2",))
    (left,) = [m for m in mgr.router.published if isinstance(m, Left)]
    assert left.agent.id == "w1"
    assert left.reason.startswith("lost: silent for 6.")
    assert mgr.admin.get_agent_by_id("w1") is None


def test_no_grace_loses_a_silent_worker_after_the_window(db: Path) -> None:
    m = ManagerHarness(db, requeue_grace=0.0)
    try:
        m.join("w1")
        submit(m, TaskSpec(id="a"))
        m.tick(3.5)
        assert "w1" not in m.admin.registry
        assert state(m, "a") == TaskStatus.QUEUED
    finally:
        m.close()


def test_the_manager_heartbeats_on_its_pub_too(mgr: ManagerHarness) -> None:
    mgr.tick(1.0)
    mgr.tick(1.0)
    beats = [m for m in mgr.router.published if isinstance(m, Heartbeat)]
    assert len(beats) >= 2
    assert {b.epoch for b in beats} == {mgr.admin.epoch}


def test_a_task_that_keeps_losing_its_worker_is_given_up(db: Path) -> None:
    m = ManagerHarness(db, max_attempts=2)
    try:
        for round_ in (1, 2):
            m.join(f"w{round_}")
            if round_ == 1:
                submit(m, TaskSpec(id="poison"))
            assert jobs_of(m, f"w{round_}") == [("poison", round_)]
            m.tick(6.5)  # silent past the window and the grace: lost
        given_up = final(m, "poison")
        assert given_up.status == ResultStatus.WORKER_LOST
        assert given_up.error is not None
        assert "on all 2 attempts" in given_up.error.message
        assert journal_rows(db)["poison"] == ("done", 2)
    finally:
        m.close()


def test_duplicate_and_foreign_results_are_acknowledged_not_recorded(mgr: ManagerHarness) -> None:
    mgr.join("w1")
    mgr.join("w2")
    submit(mgr, TaskSpec(id="a"))
    holder = "w1" if jobs_of(mgr, "w1") else "w2"
    other = "w2" if holder == "w1" else "w1"
    mgr.deliver(other, Results(results=[result("a", other)]))  # not assigned to it
    assert state(mgr, "a") == TaskStatus.RUNNING
    mgr.deliver(holder, Results(results=[result("a", holder)]))
    mgr.deliver(holder, Results(results=[result("a", holder)]))  # sent again
    assert state(mgr, "a") == TaskStatus.DONE
    assert len(mgr.router.to(holder, ResultAck)) == 2
    assert mgr.admin.counters["results_stale"] == 1
    assert mgr.admin.counters["results_duplicate"] == 1


def test_results_from_an_unregistered_peer_are_refused(mgr: ManagerHarness) -> None:
    mgr.deliver("stranger", Results(results=[result("a", "stranger")]))
    (err,) = mgr.router.to("stranger", Error)
    assert err.code == "unknown_peer"


# --------------------------------------------------------------------------- deadlines


def test_the_managers_deadline_records_a_timeout(mgr: ManagerHarness) -> None:
    mgr.join("w1")
    submit(mgr, TaskSpec(id="slow", timeout=1.0))
    mgr.tick(1.0 + 2 * 3.0 - 0.1, alive=("w1",))  # timeout plus two liveness windows: not yet
    assert state(mgr, "slow") == TaskStatus.RUNNING
    mgr.tick(0.2, alive=("w1",))
    assert final(mgr, "slow").status == ResultStatus.TIMEOUT
    assert not mgr.admin.registry.get("w1").running  # type: ignore[union-attr]


# --------------------------------------------------------------------------- restart


def running_journal(db: Path) -> None:
    """A manager that assigned task 'a' to w1 a while ago (journaled) and was killed."""
    first = ManagerHarness(db)
    first.join("w1")
    submit(first, TaskSpec(id="a"), TaskSpec(id="b", difficulty=9))
    assert jobs_of(first, "w1") == [("a", 1)]
    first.tick(0.5, alive=("w1",))  # the assignment is written after ASSIGN_DELAY
    assert journal_rows(db)["a"] == ("running", 1)
    first.loop.close()  # no close(): as if killed after the commit


def test_an_assignment_lost_in_a_crash_is_adopted_from_the_workers_holding(db: Path) -> None:
    first = ManagerHarness(db)
    first.join("w1")
    submit(first, TaskSpec(id="a"))
    assert jobs_of(first, "w1") == [("a", 1)]
    first.loop.close()  # killed at once: the assignment went out, its row was not written
    assert journal_rows(db)["a"] == ("queued", 0)
    m = ManagerHarness(db)
    try:
        rejoin(m, "w1", holding=(("a", 1),))
        m.deliver("w1", Ready(epoch=m.admin.epoch))
        m.join("w2")
        assert state(m, "a") == TaskStatus.RUNNING
        assert jobs_of(m, "w2") == []  # not assigned again
        m.deliver("w1", Results(results=[result("a", "w1")]))
        assert final(m, "a").attempt == 1
    finally:
        m.close()


def rejoin(m: ManagerHarness, worker: str, holding: tuple[tuple[str, int], ...]) -> None:
    m.deliver(
        worker,
        Register(
            version=PROTOCOL_VERSION,
            agent_id=worker,
            name=worker,
            workspace_id=m.admin.workspace_id,
            skill=5,
            capacity=1,
            kinds=["simulate"],
            holding=[ResultKey(task_id=t, attempt=a) for t, a in holding],
        ),
    )


def test_a_restarted_manager_keeps_an_orphan_with_the_worker_that_holds_it(db: Path) -> None:
    running_journal(db)
    m = ManagerHarness(db)
    try:
        assert state(m, "a") == TaskStatus.RUNNING
        assert state(m, "b") == TaskStatus.QUEUED
        rejoin(m, "w1", holding=(("a", 1),))
        m.tick(10.0, alive=("w1",))  # far past the orphan deadline: nothing to release
        assert state(m, "a") == TaskStatus.RUNNING
        m.deliver("w1", Results(results=[result("a", "w1")]))
        assert state(m, "a") == TaskStatus.DONE
        assert journal_rows(db)["a"] == ("done", 1)
    finally:
        m.close()


def test_an_orphan_whose_worker_never_returns_runs_again(db: Path) -> None:
    running_journal(db)
    m = ManagerHarness(db)
    try:
        m.join("w2")
        assert jobs_of(m, "w2") == []  # 'a' waits for w1; 'b' is too hard for w2
        m.tick(2 * 3.0 + 1.5, alive=("w2",))  # past the orphan deadline
        assert jobs_of(m, "w2") == [("a", 2)]
    finally:
        m.close()


def test_an_orphan_the_worker_no_longer_holds_runs_again(db: Path) -> None:
    running_journal(db)
    m = ManagerHarness(db)
    try:
        rejoin(m, "w1", holding=())  # came back, but without the task
        m.deliver("w1", Ready(epoch=m.admin.epoch))
        m.tick(2 * 3.0 + 1.5, alive=("w1",))
        assert jobs_of(m, "w1") == [("a", 2)]
    finally:
        m.close()


def test_an_orphan_past_its_deadline_is_recorded_once_across_restarts(db: Path) -> None:
    first = ManagerHarness(db)
    first.join("w1")
    submit(first, TaskSpec(id="orphan", timeout=0.5))
    assert jobs_of(first, "w1") == [("orphan", 1)]
    first.tick(0.3, alive=("w1",))  # its assignment is journaled
    first.loop.close()  # killed, and w1 with it: nobody comes back for the orphan
    m = ManagerHarness(db)
    try:
        m.tick(0.5 + 2 * 3.0 + 0.1)  # the deadline restarts with the manager
        assert final(m, "orphan").status == ResultStatus.TIMEOUT
        m.tick(3.0)  # past the orphan deadline too: not put back in the queue
        assert state(m, "orphan") == TaskStatus.DONE
        assert m.service.book.queued == 0
    finally:
        m.close()
    assert journal_rows(db) == {"orphan": ("done", 1)}
    again = ManagerHarness(db)
    try:
        assert state(again, "orphan") == TaskStatus.DONE
        assert again.service.book.queued == 0
    finally:
        again.close()


# --------------------------------------------------------------------------- queries


def test_tasks_request_pages_and_names_unknown_ids(mgr: ManagerHarness) -> None:
    submit(mgr, *(TaskSpec(id=f"t{i}") for i in range(3)))
    mgr.deliver(CLIENT, TasksRequest(req=2, ids=["t1", "nope"]))
    reply = mgr.router.to(CLIENT, TasksReply)[-1]
    assert [(s.id, s.state) for s in reply.tasks] == [("t1", "queued"), ("nope", "unknown")]
    mgr.deliver(CLIENT, TasksRequest(req=3, after=2))  # after the second task
    page = mgr.router.to(CLIENT, TasksReply)[-1]
    assert ([s.id for s in page.tasks], page.total) == (["t2"], 3)


# --------------------------------------------------------------------------- pushes


def test_a_watched_result_is_pushed_to_the_submitter_after_its_commit(
    mgr: ManagerHarness, db: Path
) -> None:
    mgr.join("w1")
    mgr.deliver(CLIENT, Submit(req=1, tasks=[TaskSpec(id="a")], watch=True))
    mgr.handle("w1", Results(results=[result("a", "w1")]))
    assert mgr.router.to(CLIENT, Finished) == []  # not before the commit
    mgr.flush()
    (push,) = mgr.router.to(CLIENT, Finished)
    assert push.epoch == mgr.admin.epoch
    (state_,) = push.tasks
    assert (state_.id, state_.state, state_.worker) == ("a", "done", "w1")
    assert state_.result == result("a", "w1")
    assert journal_rows(db)["a"] == ("done", 1)
    assert mgr.service.watchers.watching(CLIENT.encode()) == 0


def test_watch_answers_what_is_done_and_unknown_and_pushes_the_rest(mgr: ManagerHarness) -> None:
    mgr.join("w1")
    submit(mgr, TaskSpec(id="a"), TaskSpec(id="b"))
    mgr.deliver("w1", Results(results=[result("a", "w1")]))
    mgr.deliver("other-client", Watch(req=4, ids=["a", "b", "nope"]))
    reply = mgr.router.to("other-client", WatchReply)[-1]
    assert [s.id for s in reply.done] == ["a"]
    assert (reply.unknown, reply.watching) == (["nope"], 1)
    mgr.deliver("w1", Results(results=[result("b", "w1")]))
    (push,) = mgr.router.to("other-client", Finished)
    assert [s.id for s in push.tasks] == ["b"]


def test_a_silent_clients_watches_lapse(mgr: ManagerHarness) -> None:
    submit(mgr, TaskSpec(id="a", difficulty=9))
    mgr.deliver(CLIENT, Watch(req=2, ids=["a"]))
    assert len(mgr.service.watchers) == 1
    mgr.tick(61.0)
    assert len(mgr.service.watchers) == 0


def test_finished_tasks_leave_memory_and_are_served_from_the_journal(db: Path) -> None:
    m = ManagerHarness(db)
    try:
        m.join("w1", capacity=10)
        submit(m, *(TaskSpec(id=f"t{i}") for i in range(10)))
        m.deliver("w1", Results(results=[result(f"t{i}", "w1") for i in range(10)]))
        assert len(m.service.book) == 0
    finally:
        m.close()
    again = ManagerHarness(db)
    try:
        again.deliver(CLIENT, TasksRequest(req=1, ids=["t3", "t9"]))
        reply = again.router.to(CLIENT, TasksReply)[-1]
        assert [(s.id, s.state) for s in reply.tasks] == [("t3", "done"), ("t9", "done")]
        assert reply.tasks[0].result == result("t3", "w1")
        again.deliver(CLIENT, StatusRequest(req=2))
        counts = again.router.to(CLIENT, StatusReply)[-1].counts
        assert (counts["done"], counts["succeeded"], counts["queued"]) == (10, 10, 0)
        assert submit(again, TaskSpec(id="t3"), req=3).accepted == []  # known from the journal
    finally:
        again.close()


def test_paging_walks_every_task_by_cursor(db: Path) -> None:
    m = ManagerHarness(db)
    try:
        m.join("w1", capacity=5)
        submit(m, *(TaskSpec(id=f"t{i}") for i in range(1200)))
        m.deliver("w1", Results(results=[result(f"t{i}", "w1") for i in range(5)]))
        seen: list[str] = []
        after = 0
        for req in range(1, 5):
            m.deliver(CLIENT, TasksRequest(req=req, after=after))
            page = m.router.to(CLIENT, TasksReply)[-1]
            seen += [s.id for s in page.tasks]
            if not page.next:
                break
            after = page.next
        assert seen == [f"t{i}" for i in range(1200)]
        assert page.total == 1200
    finally:
        m.close()


def test_paging_can_ask_for_one_state_or_result_only(mgr: ManagerHarness) -> None:
    mgr.join("w1", capacity=3)
    submit(mgr, *(TaskSpec(id=f"t{i}") for i in range(6)))
    mgr.deliver("w1", Results(results=[result("t0", "w1"), result("t1", "w1", ok=False)]))

    def page(state: str) -> list[str]:
        mgr.deliver(CLIENT, TasksRequest(req=9, state=state))
        return [s.id for s in mgr.router.to(CLIENT, TasksReply)[-1].tasks]

    assert page("succeeded") == ["t0"]
    assert page("failed") == ["t1"]
    assert page("done") == ["t0", "t1"]
    assert page("running") == ["t2", "t3", "t4"]  # t3 and t4 took the freed slots
    assert page("queued") == ["t5"]
    mgr.deliver(CLIENT, TasksRequest(req=10, state="sideways"))
    assert mgr.router.to(CLIENT, Error)[-1].code == "bad_request"
