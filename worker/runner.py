"""The worker's task layer: run assigned jobs concurrently, report results until acknowledged.

A ``WorkerHooks`` extension of the ``Worker`` (``worker.use(TaskRunner(...))``).
``capacity`` slot coroutines take jobs from one queue, so at most
``capacity`` run at once; assigned jobs beyond that wait in the queue (and
count as held).  A job costs no task, lock or timer of its own unless its
kind needs one.  Results go out in batches whenever the slots run out of
ready work, and each is kept until the manager acknowledges it: re-sent
after a reconnect or after a liveness window without an acknowledgement;
a batch the connection refused (its queue full) is tried again after 50 ms,
backing off to 1 s while refusals last.  A ``withdraw`` from the manager
(the task was cancelled) drops a job that waits for a slot and cancels one
that runs (a process kind's child is killed); neither reports a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from loguru import logger

from protocol import (
    TRACEBACK_LIMIT,
    Assign,
    ErrorInfo,
    Job,
    Message,
    ResultAck,
    ResultKey,
    ResultStatus,
    Withdraw,
)
from protocol.codec import pack_chunks
from protocol.compiled import encoder
from runtime.agent import YIELD_EVERY
from worker.agent import Worker
from worker.handlers import Handlers
from worker.hooks import Handler, WorkerHooks
from worker.isolation import TaskError
from worker.results import Result, check_output, error_info, results_message
from worker.task import Retry, TaskContext, TaskFailed

Key = tuple[str, int]

_error = encoder(ErrorInfo)
SUCCEEDED = ResultStatus.SUCCEEDED.value
RETRY_FIRST, RETRY_MOST = 0.05, 1.0  # seconds between flushes while sends are refused


class TaskRunner(WorkerHooks):
    """Runs tasks by kind for ``worker``, at most ``worker.config.capacity`` at a time."""

    def __init__(self, worker: Worker, handlers: Handlers | None = None) -> None:
        self.worker = worker
        self.handlers = handlers or Handlers()
        self.capacity = worker.config.capacity
        self.kinds = self.handlers.kinds()
        self.completed = 0
        self.withdrawn = 0  # running jobs cancelled on the manager's word
        self._queue: deque[Job] = deque()
        self._ready = asyncio.Event()  # jobs are waiting in the queue
        self._held: set[Key] = set()  # assigned and not finished: queued or running
        self._running: dict[Key, asyncio.Task[Any]] = {}  # the slot running each job
        self._withdrawn: set[Key] = set()  # running jobs whose slot is being cancelled
        self._slots: list[asyncio.Task[None]] = []
        self._unacked: dict[Key, Result] = {}
        self._outbox: list[Result] = []
        self._sent_at: dict[Key, float] = {}  # clock time each unacknowledged result was sent
        self._wake = asyncio.Event()
        self._refused = False  # the last flush's send was refused: retry after a backoff
        self._changed = asyncio.Event()  # a job ended or an ack came: drain re-checks
        self._contexts: dict[int, TaskContext] = {}

    # ------------------------------------------------------------------ hooks

    def message_handlers(self) -> Mapping[type[Message], Handler]:
        return {Assign: self._on_assign, ResultAck: self._on_ack, Withdraw: self._on_withdraw}

    def running(self) -> int:
        """Jobs held: running or waiting for a slot (``heartbeat.running``)."""
        return len(self._held)

    def holding(self) -> list[ResultKey]:
        """Jobs running or waiting for a slot, and results not yet acknowledged."""
        keys = [*self._held, *self._unacked]
        return [ResultKey(task_id=t, attempt=a) for t, a in keys]

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        return [self._flush_loop(), self._slots_guard()]

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
            if key in self._held or key in self._unacked:
                continue  # already running or done: an assignment was repeated
            self._held.add(key)
            self._queue.append(job)
        if not self._slots:
            loop = asyncio.get_running_loop()
            self._slots = [
                loop.create_task(self._slot(), name=f"slot {i}") for i in range(self.capacity)
            ]
        self._ready.set()

    async def _slots_guard(self) -> None:
        """Runs as long as the worker does; its end cancels the slots."""
        if self.handlers.pool is not None:
            self.handlers.pool.start()  # warm before the first task
        try:
            await asyncio.Event().wait()
        finally:
            for slot in self._slots:
                slot.cancel()
            if self.handlers.pool is not None:
                self.handlers.pool.close()

    async def _slot(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        done = 0
        while True:
            while not self._queue:
                self._wake.set()  # out of ready work: send what is finished
                self._ready.clear()
                await self._ready.wait()
            job = self._queue.popleft()
            key = (job.task.id, job.attempt)
            if key not in self._held:
                continue  # withdrawn while it waited
            self._running[key] = me
            try:
                result = await self.execute(job)
            except asyncio.CancelledError:
                if key not in self._withdrawn or me.uncancel() > 0:
                    raise  # the worker is stopping
                self._withdrawn.discard(key)
                self._cancelled(job)
                continue  # withdrawn while it ran: no result; the slot goes on
            finally:
                self._running.pop(key, None)
                self._held.discard(key)
            self._finish(key, result)
            done += 1
            if done % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a run of instant tasks must not starve heartbeats

    def _on_withdraw(self, msg: Withdraw) -> None:
        """The manager cancelled these attempts: a waiting job is dropped, a running one's
        slot is cancelled (its process killed).  A finished one's result goes as usual."""
        if msg.epoch != self.worker.epoch:
            return
        for item in msg.keys:
            key = (item.task_id, item.attempt)
            if key not in self._held:
                continue  # finished already, or never assigned here
            self._held.discard(key)  # a waiting job is skipped when a slot takes it
            slot = self._running.get(key)
            if slot is None:
                continue
            # The slot is suspended inside this job's ``execute``: the cancellation lands there.
            self._withdrawn.add(key)
            slot.cancel()
        self._changed.set()

    def _cancelled(self, job: Job) -> None:
        self.withdrawn += 1
        task, name = job.task, self.worker.name
        logger.debug(
            "{}: task {} attempt {} cancelled by the manager",
            name,
            task.id,
            job.attempt,
            task=task.id,
            worker=name,
        )
        if self.handlers.in_thread(task.kind):
            logger.warning(
                "{}: task {} was cancelled, but its thread cannot be stopped and runs on; "
                "run kind {!r} with --process-kind to have it killed",
                name,
                task.id,
                task.kind,
                task=task.id,
                worker=name,
            )

    def _finish(self, key: Key, result: Result) -> None:
        name = self.worker.name
        logger.debug(
            "{}: task {} attempt {} {}", name, *key, result["status"], task=key[0], worker=name
        )
        self.completed += 1
        self._unacked[key] = result
        self._outbox.append(result)
        if len(self._outbox) >= YIELD_EVERY:
            self._wake.set()
        self._changed.set()

    def _context(self, attempt: int) -> TaskContext:
        ctx = self._contexts.get(attempt)
        if ctx is None:
            worker = self.worker
            ctx = self._contexts[attempt] = TaskContext(
                worker=worker.name,
                worker_id=worker.id,
                skill=worker.skill,
                attempt=attempt,
                time_scale=worker.config.time_scale,
            )
        return ctx

    async def execute(self, job: Job) -> Result:
        """Run one job now (its slot taken) and describe how it ended, as it travels."""
        task = job.task
        started = time.time()
        status, output, error = SUCCEEDED, None, None
        try:
            if self.handlers.get(task.kind) is None:
                status = ResultStatus.NO_HANDLER.value
                error = ErrorInfo(type="NoHandler", message=f"no handler for {task.kind!r}")
            elif task.timeout is None:
                output = await self.handlers.call(task.kind, task, self._context(job.attempt))
                check_output(output)
            else:
                async with asyncio.timeout(task.timeout):
                    output = await self.handlers.call(task.kind, task, self._context(job.attempt))
                check_output(output)
        except TimeoutError:
            status = ResultStatus.TIMEOUT.value
            error = ErrorInfo(type="Timeout", message=f"over {task.timeout}s")
            if self.handlers.in_thread(task.kind):
                logger.warning(
                    "{}: task {} timed out, but its thread cannot be stopped and runs on; "
                    "run kind {!r} with --process-kind to have it killed",
                    self.worker.name,
                    task.id,
                    task.kind,
                    task=task.id,
                    worker=self.worker.name,
                )
        except TaskFailed as exc:
            status, error = (
                ResultStatus.FAILED.value,
                ErrorInfo(type="TaskFailed", message=str(exc)),
            )
        except Retry as exc:
            status = ResultStatus.ERROR.value
            error = ErrorInfo(type="Retry", message=str(exc)[:TRACEBACK_LIMIT])
        except TaskError as exc:
            status = ResultStatus.ERROR.value
            error = ErrorInfo(type=exc.type_name, message=str(exc), traceback=exc.traceback)
        except Exception as exc:
            status, error = ResultStatus.ERROR.value, error_info(exc)
        return self.result(job, status, output if status == SUCCEEDED else None, error, started)

    def result(
        self, job: Job, status: str, output: Any, error: ErrorInfo | None, started: float
    ) -> Result:
        """A ``TaskResult`` map, as ``protocol.encode`` would make it."""
        worker = self.worker
        return {
            "task_id": job.task.id,
            "attempt": job.attempt,
            "worker": worker.name,
            "worker_id": worker.id,
            "success": status == SUCCEEDED,
            "status": status,
            "output": output,
            "error": None if error is None else _error(error),
            "started": started,
            "finished": time.time(),
            "skill": worker.skill,
        }

    # ------------------------------------------------------------------ results

    async def _flush_loop(self) -> None:
        retry = 0.0  # seconds to the next try while sends are refused (0: none refused)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(retry or self._window()):  # no Task, as wait_for makes
                    await self._wake.wait()
            self._wake.clear()
            self.flush(self.worker.clock())
            retry = min(max(retry * 2, RETRY_FIRST), RETRY_MOST) if self._refused else 0.0

    def _window(self) -> float:
        return self.worker.interval * self.worker.liveness

    def flush(self, now: float) -> int:
        """Send finished results in batches; re-send what waited a window unacknowledged.

        Returns how many results went out.  Results that could not be sent
        stay in the outbox; the flush loop tries again after a short backoff.
        """
        if not self.worker.connected:
            self._outbox.clear()  # kept in _unacked; re-sent when connected again
            self._refused = False
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
        limit = self.worker.config.max_message_bytes
        self._refused = False
        for data, count in pack_chunks(outbox, results_message, limit):
            if not self.worker.send_nowait(data):
                self._refused = True  # the flush loop retries the rest soon
                self._outbox = outbox[sent:] + self._outbox
                break
            sent += count
        for result in outbox[:sent]:
            self._sent_at[(result["task_id"], result["attempt"])] = now
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
        """Finish held jobs within the grace; cancel the rest; wait for the acks."""
        grace = self.worker.config.grace
        name = self.worker.name
        logger.info("{}: draining {} task(s), grace {:.1f}s", name, len(self._held), grace)
        loop = asyncio.get_running_loop()
        await self._until(lambda: not self._held, loop.time() + grace)
        cancelled = sorted(f"{t}#{a}" for t, a in self._held)
        self._held.clear()  # what still waits is withdrawn; what runs is cancelled
        for slot in set(self._running.values()):
            slot.cancel()
        if cancelled:
            logger.warning("{}: cancelled unfinished task(s): {}", name, ", ".join(cancelled))
        self._wake.set()
        ack_deadline = loop.time() + min(grace, self._window()) + 0.5
        await self._until(lambda: not self._unacked or not self.worker.connected, ack_deadline)
        if self._unacked:
            logger.warning("{}: {} result(s) never acknowledged", name, len(self._unacked))
        self.worker.bye_reason = f"stopped; cancelled {len(cancelled)}"
