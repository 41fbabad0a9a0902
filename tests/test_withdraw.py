"""The worker's side of cancellation and retries, in-process: ``withdraw`` stops a job
(waiting or running) without a result and the slot goes on; ``raise Retry`` travels as an
error of type ``Retry``, also from a task's own process.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from protocol import Assign, ResultKey, Results, TaskSpec, Withdraw
from protocol.codec import pack, plain
from tests.helpers.fakes import FakeLink, worker_with_fakes
from tests.test_worker_machine import EPOCH, GATES, connect, handlers, job, run, settle
from worker import Retry, TaskContext
from worker.isolation import outcome, reference, run_one


def results(link: FakeLink) -> dict[tuple[str, int], Any]:
    return {(r.task_id, r.attempt): r for m in link.of(Results) for r in m.results}


def withdraw(*keys: tuple[str, int], epoch: str = EPOCH) -> Withdraw:
    return Withdraw(epoch=epoch, keys=[ResultKey(task_id=t, attempt=a) for t, a in keys])


async def until(check: Any) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def test_a_withdrawn_running_job_ends_without_a_result_and_its_slot_goes_on() -> None:
    async def body() -> None:
        worker, runner, link, clock = worker_with_fakes(handlers(), capacity=1)
        connect(worker, clock)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("a"), job("b", payload=2)]))
        await settle()
        assert "a" in GATES  # running; b waits for the slot
        worker.handle(withdraw(("a", 1)))
        await settle()
        assert runner.withdrawn == 1
        assert "b" in GATES  # the slot took the next job
        GATES["b"].set()
        await settle()
        runner.flush(clock())
        assert set(results(link)) == {("b", 1)}  # nothing for a
        assert [(k.task_id, k.attempt) for k in runner.holding()] == [("b", 1)]

    run(body)


def test_a_withdrawn_waiting_job_never_runs() -> None:
    async def body() -> None:
        worker, runner, link, clock = worker_with_fakes(handlers(), capacity=1)
        connect(worker, clock)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("a"), job("b")]))
        await settle()
        worker.handle(withdraw(("b", 1)))
        assert runner.running() == 1
        GATES["a"].set()
        await settle()
        assert "b" not in GATES  # never started
        runner.flush(clock())
        assert set(results(link)) == {("a", 1)}
        assert runner.withdrawn == 0  # nothing was running to cancel

    run(body)


def test_a_withdraw_from_another_manager_instance_or_for_a_finished_job_changes_nothing() -> None:
    async def body() -> None:
        worker, runner, link, clock = worker_with_fakes(handlers(), capacity=2)
        connect(worker, clock)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("a"), job("b")]))
        await settle()
        worker.handle(withdraw(("a", 1), epoch="old"))
        GATES["b"].set()
        await settle()
        worker.handle(withdraw(("b", 1)))  # already finished: its result still goes
        GATES["a"].set()
        await settle()
        runner.flush(clock())
        assert set(results(link)) == {("a", 1), ("b", 1)}

    run(body)


def test_after_a_withdraw_the_same_slot_still_enforces_timeouts() -> None:
    """The slot swallowed one cancellation; a later job's timeout must still fire."""

    async def body() -> None:
        worker, runner, link, clock = worker_with_fakes(handlers(), capacity=1)
        connect(worker, clock)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("a"), job("slow", timeout=0.05)]))
        await settle()
        worker.handle(withdraw(("a", 1)))
        await until(lambda: runner.running() == 0)
        runner.flush(clock())
        (result,) = results(link).values()
        assert (result.task_id, result.status) == ("slow", "timeout")

    run(body)


def test_raising_retry_is_an_error_of_type_retry_without_a_traceback() -> None:
    async def body() -> None:
        worker, runner, link, clock = worker_with_fakes(handlers())
        connect(worker, clock)
        runner.handlers.register("busy", _busy)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("r", kind="busy")]))
        await until(lambda: runner.running() == 0)
        runner.flush(clock())
        (result,) = results(link).values()
        assert (result.status, result.error.type, result.error.traceback) == ("error", "Retry", "")
        assert result.error.message == "come back later"

    run(body)


def _busy(task: TaskSpec, ctx: TaskContext) -> None:
    raise Retry("come back later")


def test_retry_crosses_the_process_boundary_as_retry() -> None:
    from tests.helpers.handlers import busy

    ctx = TaskContext(worker="w", worker_id="w-1", skill=1, attempt=3, time_scale=1.0)
    reply = run_one(reference(busy), pack(plain(TaskSpec(id="t"))), pack(dataclasses.asdict(ctx)))
    with pytest.raises(Retry, match="busy on attempt 3"):
        outcome(reply)
