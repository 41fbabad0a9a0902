"""The worker's task layer: run assigned jobs concurrently, report results until acknowledged.

A ``WorkerHooks`` extension of the ``Worker`` (``worker.use(TaskRunner(...))``).
At most ``capacity`` jobs run at once; assigned jobs beyond that wait for a
slot (and count as held).  A finished job's result is kept until the manager
acknowledges it, and re-sent after a reconnect or after a liveness window
without an acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from loguru import logger

from protocol import (
    MAX_ITEM_BYTES,
    TRACEBACK_LIMIT,
    Assign,
    ErrorInfo,
    Job,
    Message,
    ProtocolError,
    ResultAck,
    ResultKey,
    Results,
    ResultStatus,
    TaskResult,
)
from protocol.codec import encode_chunks, encoded_size
from protocol.schema import check_native
from worker.agent import Worker
from worker.handlers import Handlers
from worker.hooks import Handler, WorkerHooks
from worker.isolation import TaskError
from worker.task import TaskContext, TaskFailed

Key = tuple[str, int]


class TaskRunner(WorkerHooks):
    """Runs tasks by kind for ``worker``, at most ``worker.config.capacity`` at a time."""

    def __init__(self, worker: Worker, handlers: Handlers | None = None) -> None:
        self.worker = worker
        self.handlers = handlers or Handlers()
        self.capacity = worker.config.capacity
        self.kinds = self.handlers.kinds()
        self.completed = 0
        self._jobs: dict[Key, asyncio.Task[None]] = {}
        self._unacked: dict[Key, TaskResult] = {}
        self._outbox: list[TaskResult] = []
        self._sent_at: dict[Key, float] = {}  # clock time each unacknowledged result was sent
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()  # a job ended or an ack came: drain re-checks
        self._slots = asyncio.Semaphore(self.capacity)

    # ------------------------------------------------------------------ hooks

    def message_handlers(self) -> Mapping[type[Message], Handler]:
        return {Assign: self._on_assign, ResultAck: self._on_ack}

    def running(self) -> int:
        return len(self._jobs)

    def holding(self) -> list[ResultKey]:
        """Jobs running or waiting for a slot, and results not yet acknowledged."""
        keys = [*self._jobs, *self._unacked]
        return [ResultKey(task_id=t, attempt=a) for t, a in keys]

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        return [self._flush_loop()]

    def on_ready(self) -> None:
        if self._unacked:
            logger.info(
                "{}: re-sending {} unacknowledged result(s)", self.worker.name, len(self._unacked)
            )
            self._outbox = list(self._unacked.values())
            self._wake.set()

    # ------------------------------------------------------------------ jobs

    def _on_assign(self, msg: Assign) -> None:
        if msg.epoch != self.worker.epoch:
            logger.warning("{}: assignment from an old manager instance ignored", self.worker.name)
            return
        if self.worker.draining:  # sent before the manager heard our Drain: run within the grace
            logger.info("{}: draining, but taking {} late job(s)", self.worker.name, len(msg.jobs))
        for job in msg.jobs:
            key = (job.task.id, job.attempt)
            if key in self._jobs or key in self._unacked:
                continue  # already running or done: an assignment was repeated
            self._jobs[key] = asyncio.get_running_loop().create_task(
                self._run(job), name=f"task {key}"
            )

    async def _run(self, job: Job) -> None:
        key = (job.task.id, job.attempt)
        try:
            async with self._slots:
                result = await self.execute(job)
        except asyncio.CancelledError:
            # Not a result: the manager re-queues what a departing worker held.
            self._jobs.pop(key, None)
            raise
        logger.debug("{}: task {} attempt {} {}", self.worker.name, *key, result.status)
        self._jobs.pop(key, None)
        self.completed += 1
        self._unacked[key] = result
        self._outbox.append(result)
        self._wake.set()
        self._changed.set()

    async def execute(self, job: Job) -> TaskResult:
        """Run one job now (its slot taken) and describe how it ended."""
        task = job.task
        ctx = TaskContext(
            worker=self.worker.name,
            worker_id=self.worker.id,
            skill=self.worker.skill,
            attempt=job.attempt,
            time_scale=self.worker.config.time_scale,
        )
        started = time.time()
        status, output, error = ResultStatus.SUCCEEDED, None, None
        try:
            if self.handlers.get(task.kind) is None:
                status = ResultStatus.NO_HANDLER
                error = ErrorInfo(type="NoHandler", message=f"no handler for {task.kind!r}")
            else:
                async with asyncio.timeout(task.timeout):
                    output = await self.handlers.call(task.kind, task, ctx)
                    check_output(output)
        except TimeoutError:
            status = ResultStatus.TIMEOUT
            error = ErrorInfo(type="Timeout", message=f"over {task.timeout}s")
            if self.handlers.in_thread(task.kind):
                logger.warning(
                    "{}: task {} timed out, but its thread cannot be stopped and runs on; "
                    "run kind {!r} with --process-kind to have it killed",
                    self.worker.name,
                    task.id,
                    task.kind,
                )
        except TaskFailed as exc:
            status, error = ResultStatus.FAILED, ErrorInfo(type="TaskFailed", message=str(exc))
        except TaskError as exc:
            status = ResultStatus.ERROR
            error = ErrorInfo(type=exc.type_name, message=str(exc), traceback=exc.traceback)
        except Exception as exc:
            status, error = ResultStatus.ERROR, error_info(exc)
        return TaskResult(
            task_id=task.id,
            attempt=job.attempt,
            worker=self.worker.name,
            worker_id=self.worker.id,
            success=status == ResultStatus.SUCCEEDED,
            status=status,
            output=output if status == ResultStatus.SUCCEEDED else None,
            error=error,
            started=started,
            finished=time.time(),
            skill=self.worker.skill,
        )

    # ------------------------------------------------------------------ results

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._window())
            self._wake.clear()
            self.flush(self.worker.clock())

    def _window(self) -> float:
        return self.worker.interval * self.worker.liveness

    def flush(self, now: float) -> int:
        """Send finished results in batches; re-send what waited a window unacknowledged.

        Returns how many results went out.  Results that could not be sent
        stay unacknowledged and go out again later.
        """
        if not self.worker.connected:
            self._outbox.clear()  # kept in _unacked; re-sent when connected again
            return 0
        if not self._outbox:
            window = self._window()
            self._outbox = [
                r
                for k, r in self._unacked.items()
                if now - self._sent_at.get(k, -float("inf")) > window
            ]
        outbox, self._outbox = self._outbox, []
        sent = 0
        for data, count in encode_chunks(outbox, lambda batch: Results(results=batch)):
            if not self.worker.send_nowait(data):
                break  # the rest stays in _unacked: re-sent when the manager takes messages
            sent += count
        for result in outbox[:sent]:
            self._sent_at[(result.task_id, result.attempt)] = now
        return sent

    def _on_ack(self, msg: ResultAck) -> None:
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

    async def drain(self) -> None:
        """Finish running jobs within the grace; cancel the rest; wait for the acks."""
        grace = self.worker.config.grace
        name = self.worker.name
        logger.info("{}: draining {} task(s), grace {:.1f}s", name, len(self._jobs), grace)
        loop = asyncio.get_running_loop()
        await self._until(lambda: not self._jobs, loop.time() + grace)
        cancelled = sorted(f"{t}#{a}" for t, a in self._jobs)
        for job in list(self._jobs.values()):
            job.cancel()
        if cancelled:
            logger.warning("{}: cancelled unfinished task(s): {}", name, ", ".join(cancelled))
        ack_deadline = loop.time() + min(grace, self._window()) + 0.5
        await self._until(lambda: not self._unacked or not self.worker.connected, ack_deadline)
        if self._unacked:
            logger.warning("{}: {} result(s) never acknowledged", name, len(self._unacked))
        self.worker.bye_reason = f"stopped; cancelled {len(cancelled)}"


def check_output(output: Any) -> None:
    """An output must be msgpack-native and small enough to travel with others."""
    check_native(output, "output")
    size = encoded_size(output)
    if size > MAX_ITEM_BYTES:
        raise ProtocolError(f"output of {size} bytes is over the {MAX_ITEM_BYTES}-byte limit")


def error_info(exc: BaseException) -> ErrorInfo:
    text = "".join(traceback.format_exception(exc))
    return ErrorInfo(
        type=type(exc).__name__[:200],
        message=str(exc)[:TRACEBACK_LIMIT],
        traceback=text[-TRACEBACK_LIMIT:],
    )
