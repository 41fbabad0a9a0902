"""The task book: live tasks only, queues per kind, recording rules, retries, deadlines.  No I/O."""

from __future__ import annotations

from typing import Any

import pytest

from manager.taskbook import Live, Outcome, TaskBook
from protocol import ResultStatus, TaskResult, TaskSpec, TaskStatus

NOW = 1000.0


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


def book_with(*ids: str, **fields: Any) -> TaskBook:
    book = TaskBook()
    for seq, task_id in enumerate(ids, 1):
        book.submit(TaskSpec(id=task_id, **fields), seq)
    return book


def take(book: TaskBook, worker_id: str = "w1", now: float = NOW) -> Live:
    """Pop the oldest queued task of the only queue and start it on ``worker_id``."""
    (queue,) = book.queues().values()
    task = queue.popleft()
    book.start(task, worker_id, now)
    return task


def test_tasks_wait_in_one_fifo_queue_per_kind_and_difficulty() -> None:
    book = TaskBook()
    book.submit(TaskSpec(id="a", kind="echo"), 1)
    book.submit(TaskSpec(id="b", kind="sim", difficulty=5), 2)
    book.submit(TaskSpec(id="c", kind="echo"), 3)
    queues = {key: [t.spec.id for t in q] for key, q in book.queues().items()}
    assert queues == {("echo", 1): ["a", "c"], ("sim", 5): ["b"]}
    assert (book.queued, book.running, len(book)) == (3, 0, 3)


def test_starting_counts_the_attempt_and_moves_the_counts() -> None:
    book = book_with("a", "b")
    task = take(book)
    assert (task.state, task.attempt, task.worker_id) == (TaskStatus.RUNNING, 1, "w1")
    assert (book.queued, book.running) == (1, 1)


def test_a_result_from_the_assigned_worker_finishes_the_task_and_it_leaves() -> None:
    book = book_with("a")
    take(book)
    outcome, task = book.record(result("a", 1, "w1"), "w1")
    assert outcome is Outcome.RECORDED
    assert task is not None
    assert task.state == TaskStatus.DONE
    assert book.get("a") is None  # the store keeps it now
    assert (book.queued, book.running, dict(book.finished)) == (0, 0, {"succeeded": 1})


@pytest.mark.parametrize(
    ("sender", "attempt"),
    [("w2", 1), ("w1", 2)],
    ids=["another-worker", "wrong-attempt"],
)
def test_a_result_not_from_the_current_attempt_is_stale(sender: str, attempt: int) -> None:
    book = book_with("a")
    take(book)
    outcome, task = book.record(result("a", attempt, sender), sender)
    assert (outcome, task) == (Outcome.STALE, None)
    assert book.stale == 1
    assert book.get("a") is not None


def test_the_sender_counts_not_the_worker_id_inside_the_result() -> None:
    book = book_with("a")
    take(book, "w1")
    assert book.record(result("a", 1, "w1"), "w2")[0] is Outcome.STALE


def test_a_result_for_a_queued_task_is_stale_and_one_for_no_live_task_unknown() -> None:
    book = book_with("a")
    assert book.record(result("a", 1, "w1"), "w1")[0] is Outcome.STALE
    assert book.record(result("zzz", 1, "w1"), "w1")[0] is Outcome.UNKNOWN


def test_release_requeues_at_the_front_and_remembers_who_lost_it() -> None:
    book = book_with("a", "b")
    take(book, "w1")
    assert book.release("a", NOW, "w1 lost") is None
    (queue,) = book.queues().values()
    assert [t.spec.id for t in queue] == ["a", "b"]
    task = book.get("a")
    assert task is not None
    assert (task.state, task.attempt, task.tried) == (TaskStatus.QUEUED, 1, {"w1"})
    again = take(book, "w2")
    assert again is task
    assert task.attempt == 2


def test_release_gives_up_after_max_attempts_with_the_reason() -> None:
    book = TaskBook(max_attempts=2)
    book.submit(TaskSpec(id="poison"), 1)
    take(book, "w1")
    assert book.release("poison", NOW, "w1 lost") is None
    take(book, "w2")
    final = book.release("poison", NOW, "w2 lost")
    assert final is not None
    assert final.status == ResultStatus.WORKER_LOST
    assert final.error is not None
    assert final.error.message == "w2 lost on all 2 attempts"
    assert book.get("poison") is None


def test_a_tasks_own_max_attempts_wins() -> None:
    book = TaskBook(max_attempts=5)
    book.submit(TaskSpec(id="a", max_attempts=1), 1)
    take(book)
    assert book.release("a", NOW, "lost") is not None


def test_release_of_a_queued_or_unknown_task_does_nothing() -> None:
    book = book_with("a")
    assert book.release("a", NOW, "x") is None
    assert book.release("zzz", NOW, "x") is None
    assert book.queued == 1


def test_a_deadline_is_the_timeout_plus_the_grace_from_the_start() -> None:
    book = TaskBook(deadline_grace=3.0)
    book.submit(TaskSpec(id="a", timeout=2.0), 1)
    book.submit(TaskSpec(id="b"), 2)
    take_all = book.queues()[("simulate", 1)]
    for _ in range(2):
        book.start(take_all.popleft(), "w1", NOW)
    assert book.overdue(NOW + 4.9) == []
    assert [t.spec.id for t in book.overdue(NOW + 5.1)] == ["a"]


def test_giving_up_on_the_deadline_records_a_timeout_and_frees_the_task() -> None:
    book = book_with("a", timeout=1.0)
    task = take(book)
    final = book.give_up(task, ResultStatus.TIMEOUT, "no result by the deadline", 2.0)
    assert (final.status, final.attempt, final.worker_id, final.finished) == (
        ResultStatus.TIMEOUT,
        1,
        "w1",
        2.0,
    )
    assert book.overdue(NOW + 100) == []
    assert book.get("a") is None
    assert book.running == 0


def test_giving_up_on_a_queued_task_takes_it_out_of_its_queue() -> None:
    book = book_with("a", "b")
    task = book.get("a")
    assert task is not None
    book.give_up(task, ResultStatus.ERROR, "given up", NOW)
    (queue,) = book.queues().values()
    assert [t.spec.id for t in queue] == ["b"]
    assert book.queued == 1


def test_adopting_a_queued_task_a_worker_already_runs() -> None:
    book = book_with("a", "b")
    task = book.get("a")
    assert task is not None
    book.adopt(task, "w1", 3)
    assert (task.state, task.attempt, task.worker_id) == (TaskStatus.RUNNING, 3, "w1")
    (queue,) = book.queues().values()
    assert [t.spec.id for t in queue] == ["b"]
    assert book.record(result("a", 3, "w1"), "w1")[0] is Outcome.RECORDED


def test_restored_tasks_come_back_queued_or_running() -> None:
    book = TaskBook()
    book.restore(Live(spec=TaskSpec(id="q"), seq=1))
    running = Live(spec=TaskSpec(id="r"), seq=2, state=TaskStatus.RUNNING, attempt=1)
    running.worker_id = "w1"
    book.restore(running)
    assert (book.queued, book.running) == (1, 1)
    assert [t.spec.id for t in book] == ["q", "r"]
    assert book.record(result("r", 1, "w1"), "w1")[0] is Outcome.RECORDED


def test_counts_are_kept_as_tasks_move() -> None:
    book = book_with("a", "b", "c")
    take(book)
    take(book)
    book.record(result("a", 1, "w1"), "w1")
    book.record(result("b", 1, "w1", success=False), "w1")
    book.record(result("b", 1, "w1"), "w1")  # no longer live: the service tells duplicates
    counts = book.counts()
    assert (counts["queued"], counts["running"], counts["stale"]) == (1, 0, 0)
    assert dict(book.finished) == {"succeeded": 1, "failed": 1}


def test_the_view_of_a_live_task_has_no_result() -> None:
    book = book_with("a", description="hello", difficulty=4)
    task = take(book)
    view = task.view()
    assert (view.id, view.state, view.attempt, view.description, view.difficulty, view.worker) == (
        "a",
        "running",
        1,
        "hello",
        4,
        "w1",
    )
    assert view.result is None
