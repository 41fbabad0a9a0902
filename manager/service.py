"""The manager's task layer: submission, skill-based placement, results, status.

An ``AdminHooks`` extension of the ``Admin``: it handles the task messages of
clients and workers, places work when workers come and re-queues it when
they go.  Decisions come from the pure ``TaskBook``, ``place`` and policy
functions; state changes go to the ``Journal`` and are committed in
``before_ack``, before any reply of the batch is sent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from itertools import islice

from loguru import logger

from manager.admin import Admin
from manager.config import ManagerConfig
from manager.hooks import AdminHooks, Handler
from manager.journal import Journal
from manager.placement import place
from manager.recovery import Orphans
from manager.registry import AgentRecord
from manager.scheduler import POLICIES
from manager.taskbook import Outcome, TaskBook
from protocol import (
    MAX_ITEM_BYTES,
    Assign,
    Error,
    Message,
    ProtocolError,
    Register,
    ResultAck,
    ResultKey,
    Results,
    ResultStatus,
    StatusReply,
    StatusRequest,
    Submit,
    SubmitReply,
    TaskResult,
    TaskSpec,
    TasksReply,
    TasksRequest,
    TaskState,
    TaskStatus,
    encode,
    encode_batches,
)
from protocol.codec import encoded_size

MAX_TASKS_REPLY = 1000


class TaskService(AdminHooks):
    """Tasks on top of an ``Admin``: attach with ``admin.use(TaskService(admin, journal))``."""

    def __init__(self, admin: Admin, journal: Journal) -> None:
        cfg: ManagerConfig = admin.config
        self.admin = admin
        self.config = cfg
        self.journal = journal
        self.policy = POLICIES[cfg.policy]
        self.fallback = cfg.unmatched == "strongest"
        self.book = TaskBook(max_attempts=cfg.max_attempts, deadline_grace=2 * cfg.window)
        self.orphans = Orphans()
        # Workers notice a new manager instance within a liveness window and re-register.
        self.orphans.resume(journal, self.book, admin.clock(), 2 * cfg.window + 1.0)
        self._gate_open = cfg.expect_workers <= 0

    def message_handlers(self) -> Mapping[type[Message], Handler]:
        return {
            Submit: self._on_submit,
            Results: self._on_results,
            StatusRequest: self._on_status,
            TasksRequest: self._on_tasks,
        }

    @property
    def waiting_for_workers(self) -> int:
        """Workers still awaited before assigning starts (``--expect-workers``), else 0."""
        if self._gate_open:
            return 0
        return self.config.expect_workers - len(self._task_workers())

    # ------------------------------------------------------------------ clients

    def _on_submit(self, ident: bytes, msg: Submit) -> None:
        queued = self.book.queued
        if queued + sum(self.book.get(s.id) is None for s in msg.tasks) > self.config.max_queued:
            self.admin.counters["submits_refused"] += 1
            why = f"{queued} tasks queued (limit {self.config.max_queued}); retry later"
            self.admin.post(ident, Error(code="busy", message=why, req=msg.req))
            return
        big = next((s.id for s in msg.tasks if encoded_size(s) > MAX_ITEM_BYTES), None)
        if big is not None:
            why = f"task {big[:64]!r} is over {MAX_ITEM_BYTES} bytes; pass large data by reference"
            self.admin.post(ident, Error(code="too_large", message=why, req=msg.req))
            return
        new: list[TaskSpec] = []
        known = []
        for spec in msg.tasks:
            if self.book.submit(spec):
                new.append(spec)
            else:
                rec = self.book.get(spec.id)
                assert rec is not None
                known.append(rec.view(with_result=False))  # ids and states; results via tasks
        self.journal.add(new)
        self.admin.post(ident, SubmitReply(req=msg.req, accepted=[s.id for s in new], known=known))
        if new:
            logger.info("accepted {} task(s), {} already known", len(new), len(known))
            self.schedule()

    def _on_status(self, ident: bytes, msg: StatusRequest) -> None:
        now = self.admin.clock()
        workers = [rec.info(now) for rec in self.admin.registry if rec.capacity > 0]
        counts = dict(self.book.counts())
        counts.update({k: v for k, v in self.admin.counters.items() if not k.startswith("rx.")})
        counts["gaps"] = self.admin.gaps.missed
        counts["journal_commits"] = self.journal.commits
        counts["awaiting_workers"] = self.waiting_for_workers
        reply = StatusReply(
            req=msg.req,
            manager_id=self.admin.id,
            epoch=self.admin.epoch,
            policy=self.config.policy,
            workers=workers,
            counts=counts,
            uptime=now - self.admin.started,
        )
        self.admin.post(ident, reply)

    def _on_tasks(self, ident: bytes, msg: TasksRequest) -> None:
        """States after the batch's commit: a client never sees a result that could vanish."""
        if msg.ids:
            states = [self._view(i) for i in msg.ids[:MAX_TASKS_REPLY]]
        else:
            offset = max(0, msg.offset)
            page = islice(self.book.records(), offset, offset + MAX_TASKS_REPLY)
            states = [r.view() for r in page]
        # As many as fit in one message; the client asks again for the rest.
        total = len(self.book)
        pages = encode_batches(states, lambda s: TasksReply(req=msg.req, tasks=s, total=total))
        try:
            self.admin.post(
                ident, next(pages, encode(TasksReply(req=msg.req, tasks=[], total=total)))
            )
        except ProtocolError as exc:  # one state alone is over the limit
            self.admin.post(ident, Error(code=exc.code, message=str(exc), req=msg.req))

    def _view(self, task_id: str) -> TaskState:
        rec = self.book.get(task_id)
        if rec is None:
            return TaskState(id=task_id, state=TaskStatus.UNKNOWN, attempt=0)
        return rec.view()

    # ------------------------------------------------------------------ workers

    def _on_results(self, ident: bytes, msg: Results) -> None:
        rec = self.admin.registry.get(ident.decode("utf-8", "backslashreplace"))
        if rec is None:
            self.admin.unknown(ident)
            return
        recorded: list[TaskResult] = []
        for result in msg.results:
            outcome = self.book.record(result, rec.id)
            if rec.running.get(result.task_id) == result.attempt:
                del rec.running[result.task_id]
            if outcome is Outcome.RECORDED:
                rec.completed += 1
                recorded.append(result)
                logger.info(
                    "task {} {} on {} (attempt {})",
                    result.task_id,
                    result.status,
                    result.worker,
                    result.attempt,
                )
            else:
                self.admin.counters[f"results_{outcome.value}"] += 1
                logger.info(
                    "{} result for task {} attempt {} from {} ignored",
                    outcome.value,
                    result.task_id,
                    result.attempt,
                    rec.name,
                )
        self._journal_results(recorded)
        keys = [ResultKey(task_id=r.task_id, attempt=r.attempt) for r in msg.results]
        self.admin.post(ident, ResultAck(keys=keys))
        self.schedule()

    def _journal_results(self, results: list[TaskResult]) -> None:
        if results:
            self.journal.finished(results)

    # ------------------------------------------------------------------ hooks

    def on_joined(self, rec: AgentRecord, old: AgentRecord | None, msg: Register) -> None:
        holding = {(k.task_id, k.attempt) for k in msg.holding}
        if old is not None:
            for task_id, attempt in list(old.running.items()):
                if (task_id, attempt) in holding:
                    rec.running[task_id] = attempt
                    del old.running[task_id]
        for task_id, attempt in self.orphans.claim(rec.id, msg.holding):
            rec.running[task_id] = attempt
            logger.info("{} still holds task {} (attempt {})", rec.name, task_id, attempt)

    def on_ready(self, rec: AgentRecord) -> None:
        if not self._gate_open:
            ready = len(self._task_workers())
            logger.info("{}/{} workers connected", ready, self.config.expect_workers)
            if ready >= self.config.expect_workers:
                self._open_gate(f"all {self.config.expect_workers} expected workers connected")
        self.schedule()

    def on_lost(self, rec: AgentRecord, reason: str) -> None:
        given_up: list[TaskResult] = []
        for task_id in list(rec.running):
            self._release(task_id, f"{rec.name} {reason}", given_up)
        rec.running.clear()
        self._journal_results(given_up)
        self.schedule()

    def on_tick(self, now: float) -> None:
        opened = not self._gate_open and now - self.admin.started >= self.config.expect_timeout
        if opened:
            self._open_gate(
                f"only {len(self._task_workers())} of {self.config.expect_workers} expected "
                f"workers connected within {self.config.expect_timeout:g}s"
            )
        given_up: list[TaskResult] = []
        orphans = self.orphans.expired(now)
        for task_id, worker_id in orphans:
            self._release(task_id, f"{worker_id} did not return after a restart", given_up)
        overdue = self.book.overdue(now)
        for task in overdue:
            worker = self.admin.registry.get(task.worker_id)
            if worker is not None:
                worker.running.pop(task.spec.id, None)
            self.orphans.forget(task.spec.id)
            result = self.book.give_up(
                task, ResultStatus.TIMEOUT, "no result by the deadline", time.time()
            )
            logger.warning("task {} timed out on the manager's deadline", task.spec.id)
            given_up.append(result)
        self._journal_results(given_up)
        if orphans or overdue or opened:
            self.schedule()

    def before_ack(self) -> None:
        self.journal.commit()

    def on_close(self) -> None:
        self.journal.close()

    # ------------------------------------------------------------------ placement

    def _task_workers(self) -> list[AgentRecord]:
        return [r for r in self.admin.registry.connected() if r.capacity > 0]

    def _open_gate(self, why: str) -> None:
        self._gate_open = True
        logger.info("{} after {:.2f}s; assigning", why, self.admin.clock() - self.admin.started)

    def _release(self, task_id: str, reason: str, given_up: list[TaskResult]) -> None:
        rec = self.book.get(task_id)
        if rec is None or rec.state != TaskStatus.RUNNING:
            return  # already finished (e.g. by the deadline): nothing to re-queue
        result = self.book.release(task_id, time.time(), reason)
        if result is not None:
            given_up.append(result)
            logger.warning("task {} given up: {}", task_id, reason)
        else:
            self.journal.requeued(task_id)
            logger.info("task {} re-queued: {}", task_id, reason)

    def schedule(self) -> None:
        """Assign what can start now; the assignments leave after the batch's commit."""
        if not self._gate_open:
            return
        jobs = place(self.book, self.admin.registry, self.policy, self.fallback, self.admin.clock())
        for wid, batch in jobs.items():
            self.journal.assigned((job.task.id, job.attempt, wid) for job in batch)
            logger.debug("assigning {} job(s) to {}", len(batch), wid)
            for data in encode_batches(batch, lambda j: Assign(epoch=self.admin.epoch, jobs=j)):
                self.admin.post(wid.encode(), data)
