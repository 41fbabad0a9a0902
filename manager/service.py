"""The manager's task layer: submission, skill-based placement, results, status.

Built on ``Admin``: it adds handlers for client and worker task messages and
uses the membership hooks to place work when workers come and to re-queue it
when they go.  All placement decisions come from the pure ``TaskBook`` and
policy functions; this module only moves messages.
"""

from __future__ import annotations

import time
from collections import defaultdict
from itertools import islice
from typing import Any

from loguru import logger

from manager.admin import Admin
from manager.journal import Journal
from manager.registry import CONNECTED, AgentRecord
from manager.scheduler import POLICIES, Candidate
from manager.taskbook import DONE, QUEUED, RUNNING, Outcome, TaskBook, TaskRecord
from protocol import (
    MAX_ITEM_BYTES,
    Assign,
    Error,
    Job,
    ProtocolError,
    Register,
    ResultAck,
    ResultKey,
    Results,
    StatusReply,
    StatusRequest,
    Submit,
    SubmitReply,
    TaskResult,
    TaskSpec,
    TasksReply,
    TasksRequest,
    TaskState,
    encode,
    encode_batches,
)
from protocol.codec import encoded_size

MAX_TASKS_REPLY = 1000
#: Queued tasks beyond which submissions are refused with ``busy`` (client backpressure).
MAX_QUEUED = 1_000_000


class TaskManager(Admin):
    """The manager process: an ``Admin`` that schedules tasks onto workers."""

    def __init__(
        self,
        name: str = "manager",
        *,
        policy: str = "best-fit",
        fallback: bool = False,
        expect_workers: int = 0,
        max_attempts: int = 3,
        db: str = ":memory:",
        fsync: bool = False,
        max_queued: int = MAX_QUEUED,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, **kwargs)
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
        self.policy_name = policy
        self._policy = POLICIES[policy]
        self.fallback = fallback
        self.expect_workers = expect_workers
        self._gate_open = expect_workers <= 0
        self.book = TaskBook(max_attempts=max_attempts, deadline_grace=2 * self.registry.window)
        self._handlers[Submit] = self._on_submit
        self._handlers[Results] = self._on_results
        self._handlers[StatusRequest] = self._on_status
        self._handlers[TasksRequest] = self._on_tasks
        self.max_queued = max_queued
        self.journal = Journal(db, fsync=fsync)
        self._orphans: dict[str, tuple[str, int]] = {}
        self._orphan_deadline = 0.0
        self._recover()

    def _recover(self) -> None:
        """Rebuild the book from the journal: queued stay queued; running wait for their worker."""
        counts: dict[str, int] = defaultdict(int)
        for row in self.journal.rows():
            rec = TaskRecord(spec=row.spec, state=row.state, attempt=row.attempt, result=row.result)
            if row.state == RUNNING:
                rec.worker_id = row.worker
                rec.tried.add(row.worker)
                if row.spec.timeout:  # the backstop restarts with the manager
                    rec.deadline = self.clock() + row.spec.timeout + self.book.deadline_grace
                self._orphans[row.spec.id] = (row.worker, row.attempt)
            self.book.restore(rec)
            counts[row.state] += 1
        if counts:
            # Workers notice the new instance within a liveness window and re-register.
            self._orphan_deadline = self.clock() + 2 * self.registry.window + 1.0
            logger.info(
                "journal {}: resumed {} queued, {} running (awaiting their workers), {} done",
                self.journal.path,
                counts[QUEUED],
                counts[RUNNING],
                counts[DONE],
            )

    def _commit(self) -> None:
        self.journal.commit()

    async def close(self) -> None:
        await super().close()
        self.journal.close()

    # ------------------------------------------------------------------ clients

    async def _on_submit(self, ident: bytes, msg: Submit) -> None:
        queued = self.book.queued
        if queued + sum(self.book.get(s.id) is None for s in msg.tasks) > self.max_queued:
            self.counters["submits_refused"] += 1
            why = f"{queued} tasks queued (limit {self.max_queued}); retry later"
            await self.send(ident, Error(code="busy", message=why, req=msg.req))
            return
        big = next((s.id for s in msg.tasks if encoded_size(s) > MAX_ITEM_BYTES), None)
        if big is not None:
            why = f"task {big!r} is over {MAX_ITEM_BYTES} bytes; pass large data by reference"
            await self.send(ident, Error(code="too_large", message=why, req=msg.req))
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
        accepted = [s.id for s in new]
        self.post(ident, SubmitReply(req=msg.req, accepted=accepted, known=known))
        if new:
            logger.info("accepted {} task(s), {} already known", len(new), len(known))
            await self._schedule()

    async def _on_status(self, ident: bytes, msg: StatusRequest) -> None:
        now = self.clock()
        workers = [rec.info(now) for rec in self.registry if rec.capacity > 0]
        counts = dict(self.book.counts())
        counts.update({k: v for k, v in self.counters.items() if not k.startswith("rx.")})
        counts["gaps"] = self.gaps.missed
        counts["journal_commits"] = self.journal.commits
        self.post(
            ident,
            StatusReply(
                req=msg.req,
                manager_id=self.id,
                epoch=self.epoch,
                policy=self.policy_name,
                workers=workers,
                counts=counts,
                uptime=self.clock() - self.started,
            ),
        )

    async def _on_tasks(self, ident: bytes, msg: TasksRequest) -> None:
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
            self.post(ident, next(pages, encode(TasksReply(req=msg.req, tasks=[], total=total))))
        except ProtocolError as exc:  # one state alone is over the limit
            await self.send(ident, Error(code=exc.code, message=str(exc), req=msg.req))

    def _view(self, task_id: str) -> TaskState:
        rec = self.book.get(task_id)
        return rec.view() if rec is not None else TaskState(id=task_id, state="unknown", attempt=0)

    # ------------------------------------------------------------------ workers

    async def _on_results(self, ident: bytes, msg: Results) -> None:
        rec = self.registry.get(ident.decode("utf-8", "backslashreplace"))
        if rec is None:
            await self._unknown(ident)
            return
        recorded: list[TaskResult] = []
        for result in msg.results:
            outcome = self.book.record(result, rec.id)
            if rec.running.get(result.task_id) == result.attempt:
                del rec.running[result.task_id]
            if outcome is Outcome.RECORDED:
                rec.completed += 1
                recorded.append(result)
            else:
                self.counters[f"results_{outcome.value}"] += 1
                logger.info(
                    "{} result for task {} attempt {} from {} ignored",
                    outcome.value,
                    result.task_id,
                    result.attempt,
                    rec.name,
                )
        self._recorded(recorded)
        keys = [ResultKey(task_id=r.task_id, attempt=r.attempt) for r in msg.results]
        self.post(ident, ResultAck(keys=keys))
        for result in recorded:
            logger.info(
                "task {} {} on {} (attempt {})",
                result.task_id,
                result.status,
                result.worker,
                result.attempt,
            )
        await self._schedule()

    def _recorded(self, results: list[TaskResult]) -> None:
        if results:
            self.journal.finished(results)

    async def _agent_registered(
        self, rec: AgentRecord, old: AgentRecord | None, msg: Register
    ) -> None:
        holding = {(k.task_id, k.attempt) for k in msg.holding}
        if old is not None:
            for task_id, attempt in list(old.running.items()):
                if (task_id, attempt) in holding:
                    rec.running[task_id] = attempt
                    del old.running[task_id]
        for task_id, attempt in holding:
            if self._orphans.get(task_id) == (rec.id, attempt):
                del self._orphans[task_id]
                rec.running[task_id] = attempt
                logger.info("{} still holds task {} (attempt {})", rec.name, task_id, attempt)

    async def _agent_connected(self, rec: AgentRecord) -> None:
        if not self._gate_open:
            ready = [r for r in self.registry.connected() if r.capacity > 0]
            logger.info("{}/{} workers connected", len(ready), self.expect_workers)
            if len(ready) >= self.expect_workers:
                self._gate_open = True
                logger.info(
                    "all {} expected workers connected after {:.2f}s; assigning",
                    self.expect_workers,
                    self.clock() - self.started,
                )
        await self._schedule()

    async def _agent_lost(self, rec: AgentRecord, reason: str) -> None:
        given_up: list[TaskResult] = []
        for task_id in list(rec.running):
            self._release(task_id, f"{rec.name} {reason}", given_up)
        rec.running.clear()
        self._recorded(given_up)
        await self._schedule()

    def _release(self, task_id: str, reason: str, given_up: list[TaskResult]) -> None:
        rec = self.book.get(task_id)
        if rec is None or rec.state != RUNNING:
            return  # already finished (e.g. by the deadline): nothing to re-queue
        result = self.book.release(task_id, time.time(), reason)
        if result is not None:
            given_up.append(result)
            logger.warning("task {} given up: {}", task_id, reason)
        else:
            self.journal.requeued(task_id)
            logger.info("task {} re-queued: {}", task_id, reason)

    async def _tick_tasks(self, now: float) -> None:
        if self._orphans and now > self._orphan_deadline:
            given_up: list[TaskResult] = []
            for task_id, (worker_id, _) in self._orphans.items():
                self._release(task_id, f"{worker_id} did not return after a restart", given_up)
            self._orphans.clear()
            self._recorded(given_up)
            await self._schedule()
        overdue = self.book.overdue(now)
        for task in overdue:
            worker = self.registry.get(task.worker_id)
            if worker is not None:
                worker.running.pop(task.spec.id, None)
            self._orphans.pop(task.spec.id, None)
            result = self.book.give_up(task, "timeout", "no result by the deadline", time.time())
            logger.warning("task {} timed out on the manager's deadline", task.spec.id)
            self._recorded([result])
        if overdue:
            await self._schedule()

    # ------------------------------------------------------------------ placement

    async def _schedule(self) -> None:
        if not self._gate_open or not self.book.queued:
            return
        workers = {
            r.id: r for r in self.registry.connected() if r.capacity > 0 and r.state == CONNECTED
        }
        load = {wid: len(r.running) for wid, r in workers.items()}

        def candidates() -> list[Candidate]:
            return [
                Candidate(
                    id=wid, skill=r.skill, capacity=r.capacity, running=load[wid], kinds=r.kinds
                )
                for wid, r in workers.items()
            ]

        def pick(spec: TaskSpec, tried: set[str]) -> str | None:
            wid = self._policy(spec, candidates(), tried, self.fallback)
            if wid is not None:
                load[wid] += 1
            return wid

        def room() -> bool:
            return any(load[w] < r.capacity for w, r in workers.items())

        placed = self.book.schedule(pick, room, self.clock())
        batches: dict[str, list[Job]] = defaultdict(list)
        for wid, job in placed:
            workers[wid].running[job.task.id] = job.attempt
            batches[wid].append(job)
        self.journal.assigned((job.task.id, job.attempt, wid) for wid, job in placed)
        for wid, jobs in batches.items():
            logger.debug("assigning {} job(s) to {}", len(jobs), workers[wid].name)
            for data in encode_batches(jobs, lambda j: Assign(epoch=self.epoch, jobs=j)):
                self.post(wid.encode(), data)
