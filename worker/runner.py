"""The worker's task layer: run assigned jobs concurrently, report results until acknowledged."""

from __future__ import annotations

import asyncio
import time
import traceback
from typing import Any

from loguru import logger

from protocol import (
    Assign,
    ErrorInfo,
    Job,
    ResultAck,
    ResultKey,
    Results,
    TaskResult,
)
from worker.agent import Worker
from worker.handlers import Handlers, TaskContext, TaskFailed, call

Key = tuple[str, int]

#: Results per ``Results`` message; keeps every message far below the size cap.
RESULT_BATCH = 256
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
        **kwargs: Any,
    ) -> None:
        self.handlers = handlers or Handlers()
        super().__init__(
            name, skill=skill, capacity=capacity, kinds=self.handlers.kinds(), **kwargs
        )
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.time_scale = time_scale
        self._jobs: dict[Key, asyncio.Task[None]] = {}
        self._unacked: dict[Key, TaskResult] = {}
        self._outbox: list[TaskResult] = []
        self._wake = asyncio.Event()
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
                fn = self.handlers.get(task.kind)
                if fn is None:
                    status = "no_handler"
                    error = ErrorInfo(type="NoHandler", message=f"no handler for {task.kind!r}")
                else:
                    async with asyncio.timeout(task.timeout):
                        output = await call(fn, task, ctx)
        except TimeoutError:
            status, error = "timeout", ErrorInfo(type="Timeout", message=f"over {task.timeout}s")
        except asyncio.CancelledError:
            status, error = "cancelled", ErrorInfo(type="Cancelled", message="worker stopping")
        except TaskFailed as exc:
            status, error = "failed", ErrorInfo(type="TaskFailed", message=str(exc))
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

    # ------------------------------------------------------------------ results

    async def _flush_loop(self) -> None:
        """Send finished results in batches; unacknowledged ones are re-sent after a reconnect."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.connected:
                self._outbox.clear()  # kept in _unacked; re-sent when connected again
                continue
            while self._outbox:
                batch, self._outbox = self._outbox[:RESULT_BATCH], self._outbox[RESULT_BATCH:]
                if not self.send_nowait(Results(results=batch)):
                    self._outbox.clear()
                    break

    async def _on_ack(self, msg: ResultAck) -> None:
        for key in msg.keys:
            self._unacked.pop((key.task_id, key.attempt), None)


def _error_info(exc: BaseException) -> ErrorInfo:
    text = "".join(traceback.format_exception(exc))
    return ErrorInfo(type=type(exc).__name__, message=str(exc), traceback=text[-TRACEBACK_LIMIT:])
