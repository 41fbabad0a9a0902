"""The worker's task layer: run assigned jobs concurrently, report results until acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Callable
from typing import Any

from loguru import logger

from protocol import (
    MAX_ITEM_BYTES,
    Assign,
    Drain,
    ErrorInfo,
    Job,
    ProtocolError,
    ResultAck,
    ResultKey,
    Results,
    TaskResult,
    encode_batches,
)
from protocol.codec import encoded_size
from protocol.schema import check_native
from worker.agent import Worker
from worker.handlers import Handlers, TaskContext, TaskFailed
from worker.isolation import TaskError

Key = tuple[str, int]

TRACEBACK_LIMIT = 4000


class TaskWorker(Worker):
    """A worker that runs tasks by kind, at most ``capacity`` at a time."""

    def __init__(
        self,
        name: str,
        *,
        skill: int,
        capacity: int = 1,
        handlers: Handlers | None = None,
        time_scale: float = 1.0,
        grace: float = 30.0,
        **kwargs: Any,
    ) -> None:
        self.handlers = handlers or Handlers()
        super().__init__(
            name, skill=skill, capacity=capacity, kinds=self.handlers.kinds(), **kwargs
        )
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.time_scale = time_scale
        self.grace = grace
        self.draining = False
        self._drain_task: asyncio.Task[None] | None = None
        self._jobs: dict[Key, asyncio.Task[None]] = {}
        self._unacked: dict[Key, TaskResult] = {}
        self._outbox: list[TaskResult] = []
        self._sent_at: dict[Key, float] = {}  # loop time each unacknowledged result was sent
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()  # a job ended or an ack came: drain re-checks
        self._slots = asyncio.Semaphore(capacity)
        self.completed = 0
        self._handlers[Assign] = self._on_assign
        self._handlers[ResultAck] = self._on_ack

    # ------------------------------------------------------------------ hooks

    @property
    def running(self) -> int:
        return len(self._jobs)

    def holding(self) -> list[ResultKey]:
        keys = [*self._jobs, *self._unacked]
        return [ResultKey(task_id=t, attempt=a) for t, a in keys]

    def _extra_loops(self) -> list[Any]:
        return [self._flush_loop()]

    async def _session_started(self) -> None:
        if self._unacked:
            logger.info("{}: re-sending {} unacknowledged result(s)", self.name, len(self._unacked))
            self._outbox = list(self._unacked.values())
            self._wake.set()

    # ------------------------------------------------------------------ jobs

    async def _on_assign(self, msg: Assign) -> None:
        if msg.epoch != self.epoch:
            logger.warning("{}: assignment from an old manager instance ignored", self.name)
            return
        if self.draining:  # sent before the manager heard our Drain: run it within the grace
            logger.info("{}: draining, but taking {} late job(s)", self.name, len(msg.jobs))
        for job in msg.jobs:
            key = (job.task.id, job.attempt)
            if key in self._jobs or key in self._unacked:
                continue  # already running or done: an assignment was repeated
            self._jobs[key] = asyncio.create_task(self._run(job), name=f"task {key}")

    async def _run(self, job: Job) -> None:
        task = job.task
        key = (task.id, job.attempt)
        ctx = TaskContext(
            worker=self.name,
            worker_id=self.id,
            skill=self.skill,
            attempt=job.attempt,
            time_scale=self.time_scale,
        )
        started = time.time()
        status, output, error = "succeeded", None, None
        try:
            async with self._slots:
                if self.handlers.get(task.kind) is None:
                    status = "no_handler"
                    error = ErrorInfo(type="NoHandler", message=f"no handler for {task.kind!r}")
                else:
                    async with asyncio.timeout(task.timeout):
                        output = await self.handlers.call(task.kind, task, ctx)
                        check_output(output)
        except TimeoutError:
            status, error = "timeout", ErrorInfo(type="Timeout", message=f"over {task.timeout}s")
            if self.handlers.in_thread(task.kind):
                logger.warning(
                    "{}: task {} timed out, but its thread cannot be stopped and runs on; "
                    "run kind {!r} with --process-kind to have it killed",
                    self.name,
                    task.id,
                    task.kind,
                )
        except asyncio.CancelledError:
            # Not a result: the manager re-queues what a departing worker held.
            self._jobs.pop(key, None)
            raise
        except TaskFailed as exc:
            status, error = "failed", ErrorInfo(type="TaskFailed", message=str(exc))
        except TaskError as exc:
            status = "error"
            error = ErrorInfo(type=exc.type_name, message=str(exc), traceback=exc.traceback)
        except Exception as exc:
            status, error = "error", _error_info(exc)
        result = TaskResult(
            task_id=task.id,
            attempt=job.attempt,
            worker=self.name,
            worker_id=self.id,
            success=status == "succeeded",
            status=status,
            output=output,
            error=error,
            started=started,
            finished=time.time(),
            skill=self.skill,
        )
        logger.debug("{}: task {} attempt {} {}", self.name, task.id, job.attempt, status)
        self._jobs.pop(key, None)
        self.completed += 1
        self._unacked[key] = result
        self._outbox.append(result)
        self._wake.set()
        self._changed.set()

    # ------------------------------------------------------------------ results

    async def _flush_loop(self) -> None:
        """Send finished results in batches; re-send what stays unacknowledged.

        A result is re-sent after a reconnect and whenever it has waited a
        whole liveness window for its acknowledgement.
        """
        loop = asyncio.get_running_loop()
        while True:
            window = self.interval * self.liveness
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), window)
            self._wake.clear()
            if not self.connected:
                self._outbox.clear()  # kept in _unacked; re-sent when connected again
                continue
            now = loop.time()
            if not self._outbox:
                self._outbox = [
                    r for k, r in self._unacked.items() if now - self._sent_at.get(k, 0.0) > window
                ]
            outbox, self._outbox = self._outbox, []
            for data in encode_batches(outbox, lambda batch: Results(results=batch)):
                if not self.send_nowait(data):
                    break  # kept in _unacked: re-sent when the manager takes messages again
            for result in outbox:
                self._sent_at[(result.task_id, result.attempt)] = now

    async def _on_ack(self, msg: ResultAck) -> None:
        for key in msg.keys:
            self._unacked.pop((key.task_id, key.attempt), None)
            self._sent_at.pop((key.task_id, key.attempt), None)
        self._changed.set()

    # ------------------------------------------------------------------ graceful stop

    async def _until(self, done: Callable[[], bool], deadline: float) -> None:
        """Wait for ``done()`` (re-checked when a job ends or an ack comes) or the deadline."""
        loop = asyncio.get_running_loop()
        while not done() and (left := deadline - loop.time()) > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    def request_stop(self) -> None:
        """First call: drain (no new work, finish within ``grace``); second: stop now."""
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())
        else:
            self.stopping.set()

    async def _drain(self) -> None:
        self.draining = True
        self.send_nowait(Drain(grace=self.grace))
        logger.info("{}: draining {} task(s), grace {:.1f}s", self.name, self.running, self.grace)
        loop = asyncio.get_running_loop()
        await self._until(lambda: not self._jobs, loop.time() + self.grace)
        cancelled = sorted(f"{t}#{a}" for t, a in self._jobs)
        for job in list(self._jobs.values()):
            job.cancel()
        if cancelled:
            logger.warning("{}: cancelled unfinished task(s): {}", self.name, ", ".join(cancelled))
        ack_deadline = loop.time() + min(self.grace, self.interval * self.liveness) + 0.5
        await self._until(lambda: not self._unacked or not self.connected, ack_deadline)
        if self._unacked:
            logger.warning("{}: {} result(s) never acknowledged", self.name, len(self._unacked))
        self.bye_reason = f"stopped; cancelled {len(cancelled)}"
        self.stopping.set()


def check_output(output: Any) -> None:
    """An output must be msgpack-native and small enough to travel with others."""
    check_native(output, "output")
    size = encoded_size(output)
    if size > MAX_ITEM_BYTES:
        raise ProtocolError(f"output of {size} bytes is over the {MAX_ITEM_BYTES}-byte limit")


def _error_info(exc: BaseException) -> ErrorInfo:
    text = "".join(traceback.format_exception(exc))
    return ErrorInfo(
        type=type(exc).__name__[:200],
        message=str(exc)[:TRACEBACK_LIMIT],
        traceback=text[-TRACEBACK_LIMIT:],
    )
