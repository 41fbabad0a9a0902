"""Bulk placement: policies, capacity, parked queues, prefetch of short tasks.  No I/O."""

from __future__ import annotations

from typing import Any

from manager.placement import place
from manager.registry import AgentRecord
from manager.taskbook import TaskBook
from protocol import AgentState, TaskSpec

NOW = 1000.0


def worker(
    wid: str,
    skill: int,
    capacity: int = 1,
    kinds: tuple[str, ...] = ("simulate",),
    running: int = 0,
    state: AgentState = AgentState.CONNECTED,
) -> AgentRecord:
    rec = AgentRecord(
        id=wid,
        name=wid,
        role="worker",
        skill=skill,
        capacity=capacity,
        kinds=frozenset(kinds),
        state=state,
        last_seen=NOW,
        registered=NOW,
    )
    for i in range(running):
        rec.running[f"busy-{wid}-{i}"] = 1
    return rec


def book_of(*specs: TaskSpec) -> TaskBook:
    book = TaskBook()
    for seq, spec in enumerate(specs, 1):
        book.submit(spec, seq)
    return book


def run(book: TaskBook, workers: list[AgentRecord], **kw: Any) -> dict[str, list[str]]:
    kw = {"policy": "best-fit", "fallback": False, **kw}
    placed = place(book, workers, now=NOW, **kw)
    return {wid: [t.spec.id for t in tasks] for wid, tasks in placed.items()}


def test_seed_scenario_goes_to_three_matching_workers() -> None:
    book = book_of(*(TaskSpec(id=str(d), difficulty=d) for d in (2, 5, 8)))
    workers = [worker("junior", 3), worker("mid", 6), worker("senior", 9)]
    assert run(book, workers) == {"junior": ["2"], "mid": ["5"], "senior": ["8"]}
    assert workers[0].running == {"2": 1}


def test_best_fit_fills_the_least_skilled_capable_worker_first() -> None:
    book = book_of(*(TaskSpec(id=f"t{i}", difficulty=2) for i in range(5)))
    workers = [worker("strong", 9, capacity=4), worker("weak", 3, capacity=2)]
    assert run(book, workers) == {"weak": ["t0", "t1"], "strong": ["t2", "t3", "t4"]}


def test_least_loaded_spreads_by_load_ratio() -> None:
    book = book_of(*(TaskSpec(id=f"t{i}") for i in range(4)))
    workers = [worker("a", 5, capacity=4), worker("b", 9, capacity=4, running=2)]
    placed = run(book, workers, policy="least-loaded")
    assert sorted(len(v) for v in placed.values()) == [1, 3]
    assert len(placed["a"]) == 3  # b starts half full


def test_no_worker_gets_more_than_its_capacity_and_the_rest_waits() -> None:
    book = book_of(*(TaskSpec(id=f"t{i}") for i in range(5)))
    workers = [worker("a", 5, capacity=2, running=1), worker("b", 5, capacity=1)]
    placed = run(book, workers)
    assert sum(len(v) for v in placed.values()) == 2
    assert book.queued == 3


def test_a_task_nobody_is_skilled_for_is_parked_without_blocking_others() -> None:
    book = book_of(TaskSpec(id="hard", difficulty=9), TaskSpec(id="easy", difficulty=1))
    assert run(book, [worker("w", 5, capacity=2)]) == {"w": ["easy"]}
    assert [t.spec.id for q in book.queues().values() for t in q] == ["hard"]


def test_a_kind_nobody_runs_is_parked() -> None:
    book = book_of(TaskSpec(id="x", kind="nope"), TaskSpec(id="y"))
    assert run(book, [worker("w", 5, capacity=2)]) == {"w": ["y"]}


def test_oldest_first_across_queues() -> None:
    specs = [TaskSpec(id=f"t{i}", difficulty=1 + i % 2) for i in range(6)]
    book = book_of(*specs)
    placed = run(book, [worker("w", 5, capacity=3)])
    assert placed == {"w": ["t0", "t1", "t2"]}


def test_unmatched_strongest_runs_on_the_strongest_free_worker() -> None:
    book = book_of(TaskSpec(id="hard", difficulty=9))
    workers = [worker("weak", 3), worker("mid", 6)]
    assert run(book, workers) == {}
    assert run(book, workers, fallback=True) == {"mid": ["hard"]}


def test_fallback_waits_while_a_capable_worker_is_busy() -> None:
    book = book_of(TaskSpec(id="hard", difficulty=8))
    workers = [worker("weak", 3), worker("strong", 9, running=1)]
    assert run(book, workers, fallback=True) == {}


def test_a_rerun_avoids_the_worker_that_lost_it() -> None:
    book = book_of(TaskSpec(id="a"))
    task = book.get("a")
    assert task is not None
    task.tried = {"weak"}
    workers = [worker("weak", 3), worker("strong", 9)]
    assert run(book, workers) == {"strong": ["a"]}


def test_a_rerun_goes_back_when_no_other_worker_can_take_it() -> None:
    book = book_of(TaskSpec(id="a"))
    task = book.get("a")
    assert task is not None
    task.tried = {"only"}
    assert run(book, [worker("only", 5)]) == {"only": ["a"]}


def test_draining_pending_and_capacityless_agents_get_nothing() -> None:
    book = book_of(*(TaskSpec(id=f"t{i}") for i in range(3)))
    workers = [
        worker("d", 5, state=AgentState.DRAINING),
        worker("p", 5, state=AgentState.PENDING),
        worker("client", 5, capacity=0),
    ]
    assert run(book, workers) == {}


def test_prefetch_fills_ahead_only_for_short_kinds_after_free_capacity() -> None:
    book = book_of(
        *(TaskSpec(id=f"s{i}", kind="short") for i in range(6)),
        *(TaskSpec(id=f"l{i}", kind="long") for i in range(4)),
    )
    workers = [worker("a", 5, capacity=2, kinds=("short", "long"))]
    placed = run(book, workers, prefetch=1, prefetch_kinds={"short"})
    assert placed == {"a": ["s0", "s1", "s2", "s3"]}  # 2 running + 2 waiting, all short
    assert book.queued == 6


def test_free_capacity_anywhere_comes_before_any_prefetch() -> None:
    book = book_of(*(TaskSpec(id=f"t{i}") for i in range(3)))
    workers = [worker("weak", 3), worker("strong", 9)]
    placed = run(book, workers, prefetch=1, prefetch_kinds={"simulate"})
    assert placed == {"weak": ["t0", "t2"], "strong": ["t1"]}
