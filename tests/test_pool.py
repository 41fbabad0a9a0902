"""Process kinds: a fresh process per task, or warm processes reused between tasks and
replaced after a kill; either way the worker's event loop runs on meanwhile."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from protocol import TaskSpec
from tests.helpers import handlers as fake
from worker.isolation import TaskError, run_in_process
from worker.pool import ProcessPool
from worker.task import TaskContext

CTX = TaskContext(worker="w", worker_id="w-1", skill=5, attempt=1, time_scale=1.0)


def test_pool_processes_are_reused_and_replaced_after_a_timeout_or_a_crash() -> None:
    async def body() -> None:
        pool = ProcessPool(2)
        pool.start()
        try:
            first = await pool.run(fake.whoami, TaskSpec(id="a"), CTX)
            second = await pool.run(fake.whoami, TaskSpec(id="b"), CTX)
            assert first["pid"] != os.getpid()
            assert {first["pid"], second["pid"]} <= pool.pids()  # warm: no new process
            before = pool.pids()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await pool.run(fake.hang_sync, TaskSpec(id="hang"), CTX)
            assert pool.replaced == 1
            assert len(pool.pids()) == 2
            assert pool.pids() != before  # the hung one was killed and replaced
            with pytest.raises(TaskError, match="exited"):
                await pool.run(fake.crash, TaskSpec(id="boom"), CTX)
            assert pool.replaced == 2
            after = await pool.run(fake.whoami, TaskSpec(id="c"), CTX)
            assert after["pid"] in pool.pids()
            assert after["worker"] == "w"
        finally:
            pool.close()

    asyncio.run(body())


def test_a_failing_task_keeps_its_pool_process() -> None:
    async def body() -> None:
        pool = ProcessPool(1)
        pool.start()
        try:
            (pid,) = pool.pids()
            with pytest.raises(TaskError, match="always fails"):
                await pool.run(fake.fail, TaskSpec(id="f"), CTX)
            assert pool.pids() == {pid}
            assert pool.replaced == 0
        finally:
            pool.close()

    asyncio.run(body())


def test_the_event_loop_runs_on_while_a_process_task_runs(tmp_path: Path) -> None:
    """The task waits for a file that only a coroutine on the worker's loop writes:
    were the loop blocked on the child's pipe, the task would give up ('never')."""
    flag = tmp_path / "ticked"

    async def body() -> None:
        ticks = 0

        async def ticker() -> None:  # stands for the heartbeats
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
                if ticks == 3:
                    flag.touch()

        beat = asyncio.ensure_future(ticker())
        try:
            out = await run_in_process(fake.until_file, TaskSpec(id="t", payload=str(flag)), CTX)
        finally:
            beat.cancel()
        assert out == "seen"
        assert ticks >= 3

    asyncio.run(body())
