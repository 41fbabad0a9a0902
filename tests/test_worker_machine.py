"""The worker's state machines in-process: agent + task runner on an in-memory link
with a fake clock; task functions are fakes that finish when the test says so.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from protocol import (
    PROTOCOL_VERSION,
    Assign,
    Bye,
    Drain,
    Heartbeat,
    Job,
    Probe,
    Ready,
    Register,
    ResultAck,
    ResultKey,
    Results,
    TaskSpec,
    Welcome,
)
from tests.helpers.fakes import FakeClock, FakeLink, worker_with_fakes
from worker import TaskContext
from worker.agent import Worker
from worker.handlers import HandlerError, Handlers
from worker.runner import TaskRunner
from worker.session import Session

EPOCH = "e1"
GATES: dict[str, asyncio.Event] = {}


async def gated(task: TaskSpec, ctx: TaskContext) -> Any:
    """Finishes when the test sets ``GATES[task.id]``."""
    await GATES.setdefault(task.id, asyncio.Event()).wait()
    return task.payload


def handlers() -> Handlers:
    h = Handlers()
    h.register("gated", gated)
    return h


def run(body: Callable[[], Awaitable[None]]) -> None:
    GATES.clear()
    asyncio.run(body())  # type: ignore[arg-type]


def welcome(epoch: str = EPOCH, interval: float = 1.0, liveness: int = 3) -> Welcome:
    """The manager's ``welcome``: instance ``epoch``, timing ``interval`` x ``liveness``."""
    return Welcome(
        version=PROTOCOL_VERSION,
        manager_id="m",
        manager_name="m",
        epoch=epoch,
        pub_endpoint="tcp://127.0.0.1:2",
        heartbeat_interval=interval,
        liveness=liveness,
    )


def connect(worker: Worker, clock: FakeClock, epoch: str = EPOCH) -> None:
    """Register, be welcomed, answer the probe: connected to manager instance ``epoch``."""
    worker.keep_session(clock())
    worker.handle(welcome(epoch))
    worker.handle_published(Probe(agent_id=worker.id, epoch=epoch))
    assert worker.session == Session.CONNECTED


def job(task_id: str, kind: str = "gated", attempt: int = 1, **spec: Any) -> Job:
    return Job(task=TaskSpec(id=task_id, kind=kind, **spec), attempt=attempt)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def sent_results(link: FakeLink) -> list[tuple[str, int]]:
    return [(r.task_id, r.attempt) for m in link.of(Results) for r in m.results]


def test_registration_advertises_capacity_kinds_and_every_held_job() -> None:
    async def body() -> None:
        worker, _, link, clock = worker_with_fakes(handlers(), capacity=1)
        connect(worker, clock)
        (reg,) = link.of(Register)
        assert (reg.capacity, reg.skill) == (1, 5)
        assert {"gated", "simulate", "echo", "noop", "sleep"} <= set(reg.kinds)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("a"), job("b")]))  # b waits for the slot
        await settle()
        clock.advance(1.0)
        worker.keep_session(clock())
        assert link.of(Heartbeat)[-1].running == 2
        worker.handle(Heartbeat(epoch="e2", time=0))  # a new manager instance: register again
        clock.advance(1.0)
        worker.keep_session(clock())
        held = {(k.task_id, k.attempt) for k in link.of(Register)[-1].holding}
        assert held == {("a", 1), ("b", 1)}
        GATES["a"].set()
        GATES.setdefault("b", asyncio.Event()).set()

    run(body)


def test_a_result_is_sent_until_acknowledged() -> None:
    async def body() -> None:
        worker, runner, link, clock = worker_with_fakes(handlers())
        connect(worker, clock)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("a", payload=7)]))
        await settle()
        GATES["a"].set()
        await settle()
        assert runner.flush(clock()) == 1
        assert sent_results(link) == [("a", 1)]
        assert link.of(Results)[0].results[0].output == 7
        clock.advance(2.9)
        assert runner.flush(clock()) == 0  # within the window: no re-send
        clock.advance(0.2)
        assert runner.flush(clock()) == 1  # a whole window without an ack: sent again
        worker.handle(ResultAck(keys=[ResultKey(task_id="a", attempt=1)]))
        clock.advance(10)
        assert runner.flush(clock()) == 0
        assert runner.holding() == []

    run(body)


def test_unacknowledged_results_are_resent_after_reconnecting() -> None:
    async def body() -> None:
        worker, runner, link, clock = worker_with_fakes(handlers())
        connect(worker, clock)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("a")]))
        await settle()
        GATES["a"].set()
        await settle()
        runner.flush(clock())
        worker.handle(Heartbeat(epoch="e2", time=0))  # the manager restarted
        assert worker.session == Session.OFFLINE
        assert runner.flush(clock()) == 0  # nobody to send to
        clock.advance(0.5)
        connect(worker, clock, epoch="e2")
        assert ("a", 1) in {(k.task_id, k.attempt) for k in link.of(Register)[-1].holding}
        assert runner.flush(clock()) == 1  # on_ready queued it again at once
        assert sent_results(link) == [("a", 1), ("a", 1)]

    run(body)


def test_results_a_full_queue_refused_go_out_at_the_next_flush() -> None:
    async def body() -> None:
        worker, runner, link, clock = worker_with_fakes(handlers(), capacity=4)
        connect(worker, clock)
        worker.handle(Assign(epoch=EPOCH, jobs=[job(f"t{i}") for i in range(3)]))
        await settle()
        for i in range(3):
            GATES[f"t{i}"].set()
        await settle()
        link.accepting = False
        assert runner.flush(clock()) == 0
        link.accepting = True
        assert runner.flush(clock()) == 3  # not marked sent: no window to wait out
        assert sorted(sent_results(link)) == [("t0", 1), ("t1", 1), ("t2", 1)]

    run(body)


def test_a_draining_worker_announces_it_to_every_manager_instance() -> None:
    async def body() -> None:
        worker, runner, link, clock = worker_with_fakes(handlers(), grace=30.0)
        connect(worker, clock)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("long")]))
        await settle()
        worker.request_stop()  # SIGTERM
        await settle()
        assert len(link.of(Drain)) == 1
        worker.handle(Heartbeat(epoch="e2", time=0))  # the manager restarted meanwhile
        clock.advance(0.5)
        connect(worker, clock, epoch="e2")
        assert [type(m) for m in link.sent[-2:]] == [Drain, Ready]  # drain first
        GATES["long"].set()
        await settle()
        assert not worker.stopping.is_set()  # its result is not acknowledged yet
        runner.flush(clock())
        assert sent_results(link) == [("long", 1)]
        worker.handle(ResultAck(keys=[ResultKey(task_id="long", attempt=1)]))
        await asyncio.wait_for(worker.stopping.wait(), 5)
        assert runner.holding() == []

    run(body)


def test_drain_cancels_what_outlives_the_grace() -> None:
    async def body() -> None:
        worker, runner, _, clock = worker_with_fakes(handlers(), grace=0.05)
        connect(worker, clock)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("stuck")]))
        await settle()
        worker.request_stop()
        await asyncio.wait_for(worker.stopping.wait(), 5)
        assert runner.running() == 0
        assert runner.holding() == []  # cancelled, not a result: the manager re-queues it
        assert worker.bye_reason == "stopped; cancelled 1"

    run(body)


def test_reported_times_start_when_the_job_gets_its_slot() -> None:
    async def body() -> None:
        worker, runner, link, clock = worker_with_fakes(handlers(), capacity=1)
        connect(worker, clock)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("first"), job("second")]))
        await settle()
        await asyncio.sleep(0.05)  # 'second' waits for the slot all this time
        GATES["first"].set()
        await settle()
        GATES.setdefault("second", asyncio.Event()).set()
        await settle()
        runner.flush(clock())
        done = {r.task_id: r for m in link.of(Results) for r in m.results}
        assert done["second"].started >= done["first"].finished

    run(body)


def test_repeated_and_stale_assignments_are_ignored() -> None:
    async def body() -> None:
        worker, runner, _, clock = worker_with_fakes(handlers(), capacity=4)
        connect(worker, clock)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("a")]))
        worker.handle(Assign(epoch=EPOCH, jobs=[job("a")]))
        worker.handle(Assign(epoch="old", jobs=[job("b")]))
        await settle()
        assert runner.running() == 1
        GATES["a"].set()

    run(body)


def test_stopping_before_connecting_leaves_no_coroutine_unawaited() -> None:
    async def body() -> None:
        worker = Worker("early", link=FakeLink(), heartbeat_interval=0.05)
        task = asyncio.ensure_future(worker.arun_worker(b""))
        await asyncio.sleep(0.05)
        await worker.stop()
        await asyncio.wait_for(task, 5)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run(body)
        gc.collect()
    assert not [w for w in seen if "never awaited" in str(w.message)]


def nested_process_kind() -> Handlers:
    h = Handlers()

    def local(task: TaskSpec, ctx: TaskContext) -> None:
        return None

    h.register("local", local)
    return h


def test_a_process_kind_that_cannot_be_imported_is_refused_at_start() -> None:
    h = nested_process_kind()
    with pytest.raises(HandlerError, match="module-level"):
        h.isolate("local")
    with pytest.raises(HandlerError, match="module-level"):
        Handlers().register("anon", lambda t, c: None, process=True)


def test_the_runner_is_a_hook_of_the_worker() -> None:
    worker, runner, _, _ = worker_with_fakes(handlers(), capacity=3)
    assert worker.hooks == [runner]
    assert isinstance(runner, TaskRunner)
    assert worker.capacity == 3
    plain = Worker("ceylon", link=FakeLink())
    assert plain.capacity == 0  # a Ceylon worker without a runner takes no tasks


# --------------------------------------------------------------------------- liveness


def beats(
    worker: Worker, clock: FakeClock, seconds: float, *, dealer: bool = True, pub: bool = True
) -> None:
    """Let ``seconds`` pass in session ticks; the manager heartbeats on the channels named."""
    for _ in range(round(seconds / 0.25)):
        clock.advance(0.25)
        if dealer:
            worker.handle(Heartbeat(epoch=worker.epoch, time=0))
        if pub:
            worker.handle_published(Heartbeat(epoch=worker.epoch, time=0))
        worker.keep_session(clock())


def test_a_silent_sub_makes_the_worker_register_again_keeping_its_tasks() -> None:
    async def body() -> None:
        worker, runner, link, clock = worker_with_fakes(handlers())
        connect(worker, clock)
        worker.handle(Assign(epoch=EPOCH, jobs=[job("a")]))
        await settle()
        beats(worker, clock, 5.0)  # both channels heard: nothing happens
        assert worker.session == Session.CONNECTED
        assert link.subs == 1
        beats(worker, clock, 3.0, pub=False)  # the SUB hears nothing for the window
        assert worker.session == Session.CONNECTED
        beats(worker, clock, 0.5, pub=False)
        assert worker.session == Session.OFFLINE  # registers again ...
        assert link.subs == 2  # ... on a fresh SUB
        assert link.dealers == 0  # the DEALER works: kept
        worker.keep_session(clock())
        held = {(k.task_id, k.attempt) for k in link.of(Register)[-1].holding}
        assert held == {("a", 1)}  # the manager moves the task to the new registration
        assert runner.running() == 1
        connect(worker, clock)
        assert link.subs == 2  # same endpoint: the fresh SUB is kept
        GATES["a"].set()

    run(body)


def test_a_silent_manager_renews_both_sockets_with_its_timing() -> None:
    worker, _, link, clock = worker_with_fakes(handlers(), heartbeat_interval=1.0)
    assert link.heartbeat == (1.0, 3)  # the worker's own settings until welcomed
    connect(worker, clock)  # welcome: interval 1.0, liveness 3
    beats(worker, clock, 3.5, dealer=False, pub=False)
    assert worker.session == Session.OFFLINE
    assert (link.dealers, link.subs) == (1, 2)  # a new DEALER and a fresh SUB
    worker.keep_session(clock())
    worker.handle(welcome(interval=0.5, liveness=4))
    assert link.heartbeat == (0.5, 4)  # sockets made from now on use the manager's timing


def test_a_probing_worker_renews_its_sub_then_registers_again() -> None:
    worker, _, link, clock = worker_with_fakes(handlers())
    connect(worker, clock)
    worker.handle(Heartbeat(epoch="e2", time=0))  # a new manager instance
    worker.keep_session(clock())
    worker.handle(welcome("e2"))
    assert worker.session == Session.PROBING
    beats(worker, clock, 3.0, pub=False)
    assert link.subs == 1  # a window without its probe ...
    beats(worker, clock, 0.5, pub=False)
    assert link.subs == 2  # ... and the SUB is renewed
    registers = len(link.of(Register))
    beats(worker, clock, 3.0, pub=False)  # two windows: perhaps nobody probes us
    assert worker.session == Session.OFFLINE
    worker.keep_session(clock())
    assert len(link.of(Register)) == registers + 1
    worker.handle(welcome("e2"))
    worker.handle_published(Probe(agent_id=worker.id, epoch="e2"))
    assert worker.session == Session.CONNECTED
    assert link.of(Ready)[-1].epoch == "e2"


def test_a_late_welcome_does_not_undo_a_connection() -> None:
    worker, _, link, clock = worker_with_fakes(handlers())
    connect(worker, clock)
    worker.handle(Bye(reason="restart"))  # offline: registers every 0.25 s until welcomed
    for _ in range(2):
        clock.advance(0.25)
        worker.keep_session(clock())
    assert len(link.of(Register)) == 3
    worker.handle(welcome())  # the answer to the first register
    worker.handle_published(Probe(agent_id=worker.id, epoch=EPOCH))
    assert worker.session == Session.CONNECTED
    worker.handle(welcome())  # the answer to the second: the manager probes a new record
    assert worker.session == Session.CONNECTED
    readies = len(link.of(Ready))
    worker.handle_published(Probe(agent_id=worker.id, epoch=EPOCH))
    assert len(link.of(Ready)) == readies + 1  # the new record is proven as well
    beats(worker, clock, 10.0)
    assert worker.session == Session.CONNECTED


def test_the_flush_loop_retries_a_refused_send_soon_not_a_window_later() -> None:
    async def body() -> None:
        worker, runner, link, clock = worker_with_fakes(handlers())
        worker.keep_session(clock())
        # A window of a minute: far beyond the wait below.
        worker.handle(welcome(interval=20.0))
        worker.handle_published(Probe(agent_id=worker.id, epoch=EPOCH))
        loops = [asyncio.ensure_future(c) for c in runner.loops()]
        try:
            worker.handle(Assign(epoch=EPOCH, jobs=[job("a")]))
            await settle()
            link.accepting = False  # the manager's queue is full
            GATES["a"].set()
            for _ in range(200):  # the slot wakes the flush loop, whose send is refused
                await asyncio.sleep(0.01)
                if link.refused:
                    break
            assert link.refused
            assert sent_results(link) == []
            link.accepting = True  # nothing else happens on this idle worker
            for _ in range(1000):  # at most ~10 s, a sixth of the window
                if sent_results(link):
                    break
                await asyncio.sleep(0.01)
            assert sent_results(link) == [("a", 1)]
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    run(body)
