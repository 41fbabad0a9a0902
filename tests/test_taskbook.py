"""The task book: queue order, recording rules, retries and deadlines.  No I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import protocol
from manager.taskbook import Outcome, TaskBook
from protocol import Job, ResultStatus, TaskResult, TaskSpec, TaskStatus

NOW = 1000.0


def spec(id: str, **fields: Any) -> TaskSpec:
    return TaskSpec(id=id, **fields)


def result(task_id: str, attempt: int, worker_id: str, *, success: bool = True) -> TaskResult:
    return TaskResult(
        task_id=task_id,
        attempt=attempt,
        worker=worker_id.upper(),
        worker_id=worker_id,
        success=success,
        status="succeeded" if success else "failed",
        output="ok" if success else None,
    )


def always(worker_id: str | None) -> Callable[[TaskSpec, set[str]], str | None]:
    return lambda _spec, _tried: worker_id


def unlimited() -> bool:
    return True


def book_with(*ids: str, **kwargs: Any) -> TaskBook:
    book = TaskBook(**kwargs)
    for task_id in ids:
        assert book.submit(spec(task_id))
    return book


def run(book: TaskBook, worker_id: str = "w1", now: float = NOW) -> list[tuple[str, Job]]:
    return book.schedule(always(worker_id), unlimited, now)


# --------------------------------------------------------------------------- submit


def test_submit_queues_new_tasks_in_order() -> None:
    book = book_with("a", "b", "c")
    assert len(book) == 3
    assert book.queued == 3
    assert book.queue() == ("a", "b", "c")
    rec = book.get("b")
    assert rec is not None
    assert rec.state == TaskStatus.QUEUED
    assert rec.attempt == 0


def test_submit_is_idempotent_by_id() -> None:
    book = TaskBook()
    assert book.submit(spec("a", description="first")) is True
    assert book.submit(spec("a", description="second", difficulty=9)) is False
    assert len(book) == 1
    assert book.queue() == ("a",)
    rec = book.get("a")
    assert rec is not None
    assert rec.spec.description == "first"


def test_resubmitting_a_done_task_does_not_requeue_it() -> None:
    book = book_with("a")
    run(book)
    assert book.record(result("a", 1, "w1"), "w1") is Outcome.RECORDED
    assert book.submit(spec("a")) is False
    assert book.queued == 0
    rec = book.get("a")
    assert rec is not None
    assert rec.state == TaskStatus.DONE


def test_get_unknown_task_is_none() -> None:
    assert TaskBook().get("nope") is None


# --------------------------------------------------------------------------- schedule


def test_schedule_places_every_task_in_queue_order() -> None:
    book = book_with("a", "b", "c")
    placed = run(book, "w1")
    assert [(w, j.task.id, j.attempt) for w, j in placed] == [
        ("w1", "a", 1),
        ("w1", "b", 1),
        ("w1", "c", 1),
    ]
    assert book.queued == 0
    for task_id in "abc":
        rec = book.get(task_id)
        assert rec is not None
        assert (rec.state, rec.worker_id, rec.attempt) == (TaskStatus.RUNNING, "w1", 1)


def test_job_carries_the_submitted_spec() -> None:
    book = TaskBook()
    original = spec("a", description="d", difficulty=7, payload={"x": 1})
    book.submit(original)
    [(_, job)] = run(book)
    assert job.task == original


def test_unplaced_tasks_keep_their_order() -> None:
    book = book_with("a", "b", "c", "d", "e")
    placed = book.schedule(lambda s, _tried: "w1" if s.id in {"b", "d"} else None, unlimited, NOW)
    assert [j.task.id for _, j in placed] == ["b", "d"]
    assert book.queue() == ("a", "c", "e")


def test_nothing_placeable_leaves_queue_unchanged() -> None:
    book = book_with("a", "b", "c")
    assert book.schedule(always(None), unlimited, NOW) == []
    assert book.queue() == ("a", "b", "c")


def test_room_false_stops_the_pass() -> None:
    book = book_with("a", "b", "c", "d")
    asked: list[str] = []
    budget = [2]

    def pick(s: TaskSpec, _tried: set[str]) -> str | None:
        asked.append(s.id)
        budget[0] -= 1
        return "w1"

    placed = book.schedule(pick, lambda: budget[0] > 0, NOW)
    assert [j.task.id for _, j in placed] == ["a", "b"]
    assert asked == ["a", "b"]  # c and d were not even considered
    assert book.queue() == ("c", "d")


def test_room_false_after_a_held_task_keeps_the_held_task_first() -> None:
    book = book_with("a", "b", "c")
    calls = [0]

    def pick(s: TaskSpec, _tried: set[str]) -> str | None:
        calls[0] += 1
        return None if s.id == "a" else "w1"

    placed = book.schedule(pick, lambda: calls[0] < 2, NOW)
    assert [j.task.id for _, j in placed] == ["b"]
    assert book.queue() == ("a", "c")


def test_no_room_at_all_places_nothing_and_asks_nobody() -> None:
    book = book_with("a")

    def pick(s: TaskSpec, _tried: set[str]) -> str | None:
        raise AssertionError("pick must not be called without room")

    assert book.schedule(pick, lambda: False, NOW) == []
    assert book.queue() == ("a",)


def test_queue_survives_an_exception_from_pick() -> None:
    book = book_with("a", "b", "c", "d")

    def pick(s: TaskSpec, _tried: set[str]) -> str | None:
        if s.id == "c":
            raise ValueError("policy bug")
        return None

    with pytest.raises(ValueError, match="policy bug"):
        book.schedule(pick, unlimited, NOW)
    assert book.queue() == ("a", "b", "c", "d")


# --------------------------------------------------------------------------- record


def test_result_from_assigned_worker_is_recorded() -> None:
    book = book_with("a")
    run(book, "w1")
    res = result("a", 1, "w1")
    assert book.record(res, "w1") is Outcome.RECORDED
    rec = book.get("a")
    assert rec is not None
    assert rec.state == TaskStatus.DONE
    assert rec.result == res
    assert rec.deadline is None


def test_second_result_is_duplicate_and_first_result_stays() -> None:
    book = book_with("a")
    run(book, "w1")
    first = result("a", 1, "w1")
    book.record(first, "w1")
    assert book.record(result("a", 1, "w1", success=False), "w1") is Outcome.DUPLICATE
    assert book.record(result("a", 1, "w2"), "w2") is Outcome.DUPLICATE
    rec = book.get("a")
    assert rec is not None
    assert rec.result == first
    assert book.duplicates == 2
    assert book.counts()["duplicates"] == 2


def test_result_from_another_worker_is_stale() -> None:
    book = book_with("a")
    run(book, "w1")
    assert book.record(result("a", 1, "w2"), "w2") is Outcome.STALE
    rec = book.get("a")
    assert rec is not None
    assert rec.state == TaskStatus.RUNNING
    assert rec.result is None
    assert book.stale == 1


def test_sender_must_match_not_the_worker_id_inside_the_result() -> None:
    book = book_with("a")
    run(book, "w1")
    assert book.record(result("a", 1, "w1"), "w2") is Outcome.STALE  # forged by w2
    assert book.record(result("a", 1, "w2"), "w1") is Outcome.RECORDED


def test_result_for_wrong_attempt_is_stale() -> None:
    book = book_with("a")
    run(book, "w1")
    assert book.record(result("a", 2, "w1"), "w1") is Outcome.STALE
    assert book.record(result("a", 0, "w1"), "w1") is Outcome.STALE
    assert book.record(result("a", 1, "w1"), "w1") is Outcome.RECORDED


def test_result_for_a_queued_task_is_stale() -> None:
    book = book_with("a")
    assert book.record(result("a", 0, ""), "") is Outcome.STALE
    assert book.queue() == ("a",)


def test_result_for_unknown_task_is_unknown() -> None:
    book = book_with("a")
    assert book.record(result("zzz", 1, "w1"), "w1") is Outcome.UNKNOWN
    assert book.counts()["stale"] == 0
    assert book.counts()["duplicates"] == 0


# --------------------------------------------------------------------------- release


def test_release_requeues_at_front_and_next_attempt_is_higher() -> None:
    book = book_with("a", "b", "c")
    book.schedule(always("w1"), lambda: book.queued > 1, NOW)  # places a and b
    assert book.queue() == ("c",)
    assert book.release("b", NOW, "lost") is None
    rec = book.get("b")
    assert rec is not None
    assert (rec.state, rec.worker_id, rec.deadline) == (TaskStatus.QUEUED, "", None)
    assert book.queue() == ("b", "c")
    placed = run(book, "w2")
    assert [(w, j.task.id, j.attempt) for w, j in placed] == [("w2", "b", 2), ("w2", "c", 1)]


def test_pick_sees_workers_that_already_lost_the_task() -> None:
    book = book_with("a")
    run(book, "w1")
    book.release("a", NOW, "lost")
    seen: list[set[str]] = []

    def pick(s: TaskSpec, tried: set[str]) -> str | None:
        seen.append(set(tried))
        return "w2"

    book.schedule(pick, unlimited, NOW)
    assert seen == [{"w1"}]


def test_late_result_from_lost_worker_is_stale_and_new_worker_wins() -> None:
    book = book_with("a")
    run(book, "w1")
    book.release("a", NOW, "lost")
    assert book.record(result("a", 1, "w1"), "w1") is Outcome.STALE  # while queued
    run(book, "w2")
    assert book.record(result("a", 1, "w1"), "w1") is Outcome.STALE  # old attempt
    assert book.record(result("a", 2, "w2"), "w2") is Outcome.RECORDED


def test_release_gives_up_after_max_attempts() -> None:
    book = book_with("a", max_attempts=2)
    run(book, "w1", now=10.0)
    assert book.release("a", 11.0, "w1 lost") is None
    run(book, "w2", now=12.0)
    final = book.release("a", 13.0, "w2 lost")
    assert final is not None
    assert final.task_id == "a"
    assert final.success is False
    assert final.status == "worker_lost"
    assert final.status in protocol.RESULT_STATUSES
    assert final.attempt == 2
    assert final.worker_id == "w2"
    assert final.finished == 13.0
    assert final.error is not None
    assert "2 attempts" in final.error.message
    rec = book.get("a")
    assert rec is not None
    assert rec.state == TaskStatus.DONE
    assert rec.result == final
    assert book.queued == 0
    assert run(book, "w3") == []


def test_default_max_attempts_is_three() -> None:
    book = book_with("a")
    outcomes = []
    for attempt in range(1, 4):
        placed = run(book, f"w{attempt}")
        assert [j.attempt for _, j in placed] == [attempt]
        outcomes.append(book.release("a", NOW, "lost"))
    assert outcomes[:2] == [None, None]
    assert outcomes[2] is not None
    assert outcomes[2].status == "worker_lost"


def test_result_after_giving_up_is_duplicate() -> None:
    book = book_with("a", max_attempts=1)
    run(book, "w1")
    assert book.release("a", NOW, "lost") is not None
    assert book.record(result("a", 1, "w1"), "w1") is Outcome.DUPLICATE


@pytest.mark.parametrize(("task_limit", "book_limit", "attempts"), [(1, 3, 1), (5, 1, 5)])
def test_per_task_max_attempts_overrides_the_book(
    task_limit: int, book_limit: int, attempts: int
) -> None:
    book = TaskBook(max_attempts=book_limit)
    book.submit(spec("a", max_attempts=task_limit))
    final = None
    tries = 0
    while final is None:
        assert run(book), "the task must be requeued until it is given up"
        tries += 1
        final = book.release("a", NOW, "lost")
    assert tries == attempts
    assert final.attempt == attempts


def test_release_of_done_or_queued_task_does_nothing() -> None:
    book = book_with("a", "b")
    book.schedule(always("w1"), lambda: book.queued > 1, NOW)  # only a runs
    book.record(result("a", 1, "w1"), "w1")
    assert book.release("a", NOW, "lost") is None
    assert book.release("b", NOW, "lost") is None
    assert book.queue() == ("b",)
    rec = book.get("a")
    assert rec is not None
    assert rec.state == TaskStatus.DONE


# --------------------------------------------------------------------------- deadlines


def test_deadline_is_timeout_plus_grace_from_start() -> None:
    book = TaskBook(deadline_grace=2.0)
    book.submit(spec("slow", timeout=10.0))
    book.submit(spec("no-timeout"))
    run(book, now=100.0)
    rec = book.get("slow")
    assert rec is not None
    assert rec.deadline == pytest.approx(112.0)
    assert book.overdue(111.9) == []
    assert book.overdue(112.0) == []
    assert [r.spec.id for r in book.overdue(112.1)] == ["slow"]
    assert [r.spec.id for r in book.overdue(1e9)] == ["slow"]  # no timeout, never overdue


def test_finished_or_requeued_task_is_not_overdue() -> None:
    book = TaskBook(deadline_grace=0.0)
    book.submit(spec("done", timeout=1.0))
    book.submit(spec("lost", timeout=1.0))
    run(book, now=0.0)
    book.record(result("done", 1, "w1"), "w1")
    book.release("lost", 0.5, "lost")
    assert book.overdue(100.0) == []


def test_retry_gets_a_fresh_deadline() -> None:
    book = TaskBook(deadline_grace=1.0)
    book.submit(spec("a", timeout=5.0))
    run(book, now=0.0)
    book.release("a", 3.0, "lost")
    run(book, now=50.0)
    assert book.overdue(10.0) == []
    assert len(book.overdue(56.5)) == 1


def test_give_up_on_deadline_records_a_timeout() -> None:
    book = TaskBook(deadline_grace=0.0)
    book.submit(spec("a", timeout=1.0))
    run(book, now=0.0)
    [rec] = book.overdue(2.0)
    final = book.give_up(rec, ResultStatus.TIMEOUT, "no result by the deadline", 2.0)
    assert (final.status, final.success, final.attempt) == ("timeout", False, 1)
    assert book.overdue(3.0) == []
    assert book.record(result("a", 1, "w1"), "w1") is Outcome.DUPLICATE
    assert book.counts()["failed"] == 1


def test_give_up_on_a_queued_task_removes_it_from_the_queue() -> None:
    book = book_with("a", "b")
    rec = book.get("a")
    assert rec is not None
    book.give_up(rec, ResultStatus.ERROR, "given up by the operator", NOW)
    assert book.queue() == ("b",)
    assert [j.task.id for _, j in run(book)] == ["b"]


# --------------------------------------------------------------------------- counts and views


def test_counts_reflect_every_state() -> None:
    book = book_with("ok", "bad", "run", "wait1", "wait2")
    book.schedule(always("w1"), lambda: book.queued > 2, NOW)  # ok, bad, run
    book.record(result("ok", 1, "w1"), "w1")
    book.record(result("bad", 1, "w1", success=False), "w1")
    book.record(result("ok", 1, "w1"), "w1")  # duplicate
    book.record(result("run", 1, "w9"), "w9")  # stale
    assert book.counts() == {
        "queued": 2,
        "running": 1,
        "done": 2,
        "succeeded": 1,
        "failed": 1,
        "duplicates": 1,
        "stale": 1,
    }


def test_counts_of_empty_book() -> None:
    assert TaskBook().counts() == {
        "queued": 0,
        "running": 0,
        "done": 0,
        "succeeded": 0,
        "failed": 0,
        "duplicates": 0,
        "stale": 0,
    }


def test_view_reports_state_and_result_and_encodes() -> None:
    book = TaskBook()
    book.submit(spec("a", description="calc", difficulty=4))
    run(book, "w1")
    res = result("a", 1, "w1")
    book.record(res, "w1")
    rec = book.get("a")
    assert rec is not None
    view = rec.view()
    assert (view.id, view.state, view.attempt, view.worker) == ("a", TaskStatus.DONE, 1, "w1")
    assert (view.description, view.difficulty, view.result) == ("calc", 4, res)
    reply = protocol.TasksReply(req=1, tasks=[view])
    assert protocol.decode(protocol.encode(reply)) == reply


def test_records_lists_every_task() -> None:
    book = book_with("a", "b")
    assert sorted(r.spec.id for r in book.records()) == ["a", "b"]
