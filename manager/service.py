"""The manager's task layer: submission, skill-based placement, results, pushes.

An ``AdminHooks`` extension of the ``Admin``: it handles the task messages of
clients and workers, places work when workers come and re-queues it when
they go.  Decisions come from the pure ``TaskBook``, ``place`` and policy
functions; finished tasks leave memory for the ``Store``, which is committed
in ``before_ack``, before any reply of the batch is sent.  Queries (``tasks``,
``watch``, ``status``) are answered by ``manager.queries``; an error result is
retried after its backoff while the task has ``retries`` left (``TaskBook``);
operators' ``cancel``, ``retry`` and ``purge`` are ``manager.actions``.

With CURVE every task belongs to the client key that submitted it: another
client key can neither read, watch nor re-submit it (``Admin.viewer``);
operator keys see all.  A result counts only from the registered worker
that holds the attempt, under that worker's registered name and id.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from loguru import logger

from manager import wire
from manager.admin import Admin
from manager.admission import Admission
from manager.config import ManagerConfig
from manager.hooks import AdminHooks, Handler
from manager.placement import place
from manager.queries import Queries
from manager.recovery import Orphans, held, release
from manager.registry import AgentRecord
from manager.stats import Stats
from manager.store import Store
from manager.taskbook import Live, Outcome, TaskBook
from manager.waiting import Unmatched
from manager.watchers import Watchers
from protocol import (
    Message,
    Register,
    Results,
    ResultStatus,
    StatusRequest,
    Submit,
    SubmitReply,
    TaskResult,
    TaskSpec,
    TasksRequest,
    TaskState,
    Watch,
)
from protocol.compiled import encoder
from runtime.throttle import Throttle

#: A kind whose tasks recently took less than this (seconds) is prefetched.
SHORT_TASK = 0.1
#: Longest task duration a worker's times are believed for (seconds).
LONGEST_TASK = 30 * 86_400.0


class TaskService(AdminHooks):
    """Tasks on top of an ``Admin``: attach with ``admin.use(TaskService(admin, store))``."""

    def __init__(self, admin: Admin, store: Store) -> None:
        cfg: ManagerConfig = admin.config
        self.admin = admin
        self.config = cfg
        self.store = store
        self.book = TaskBook(max_attempts=cfg.max_attempts, deadline_grace=2 * cfg.window)
        self.watchers = Watchers(admin.clock)
        self.orphans = Orphans()
        self.queries = Queries(self)
        self.admission = Admission(self)
        self.durations: dict[str, float] = {}  # kind -> recent seconds per task (EWMA)
        self.done_before: Counter[str] = Counter(store.tally())  # final results at start
        self.owned: Counter[str] = Counter(store.owners())  # tasks per owner key
        # Workers notice a new manager instance within a liveness window and re-register.
        self.orphans.resume(store, self.book, admin.clock(), 2 * cfg.window + 1.0)
        self._gate_open = cfg.expect_workers <= 0
        self._pushes: dict[bytes, list[dict[str, Any]]] = {}
        self._briefs: dict[bytes, list[tuple[str, str]]] = {}  # (task id, status) per client
        self._ignored = Throttle("ignored results")
        self.unmatched = Unmatched(self)
        self.stats = Stats(self)
        admin.use(self.stats)

    def message_handlers(self) -> Mapping[type[Message], Handler]:
        return {
            Submit: self._on_submit,
            Results: self._on_results,
            StatusRequest: self.queries.on_status,
            TasksRequest: self.queries.on_tasks,
            Watch: self.queries.on_watch,
        }

    @property
    def waiting_for_workers(self) -> int:
        """Workers still awaited before assigning starts (``--expect-workers``), else 0."""
        if self._gate_open:
            return 0
        return self.config.expect_workers - len(self._task_workers())

    # ------------------------------------------------------------------ clients

    def _on_submit(self, ident: bytes, msg: Submit) -> None:
        self.watchers.heard(ident)
        owner = self.admin.endpoint.peer_key
        fresh: dict[str, TaskSpec] = {}
        for spec in msg.tasks:
            if spec.id not in fresh and self.book.get(spec.id) is None:
                fresh[spec.id] = spec
        refusal = self.admission.refusal(msg, fresh)
        if refusal is not None:
            self.admin.post(ident, refusal)
            return
        first = self.store.next_seq()
        rows = [(first + n, spec) for n, spec in enumerate(fresh.values())]
        recorded = self.store.add(rows, owner)  # ids that already have a final result
        done = self.store.final(recorded) if recorded else {}
        new = [(seq, spec) for seq, spec in rows if spec.id not in done] if done else rows
        accepted = [spec.id for _, spec in new]
        unmatched, failing = self.unmatched.sort(new)
        for seq, spec in new:
            if spec.id not in failing:
                self.book.submit(spec, seq, owner)
        self.owned[owner] += len(accepted)
        known, watched = self._report(ident, msg, set(accepted), done)
        if msg.watch:
            self.watchers.watch(ident, watched, owner, msg.brief)
        if failing:  # --unmatched fail: recorded at once, pushed to the watchers
            self._record(self.unmatched.fail(new, failing, owner))
        reply = SubmitReply(
            req=msg.req, accepted=accepted, known=known, epoch=self.admin.epoch, unmatched=unmatched
        )
        self.admin.post(ident, reply)
        if accepted:
            logger.debug("accepted {} task(s), {} already known", len(accepted), len(known))
            self.schedule()

    def _report(
        self, ident: bytes, msg: Submit, new: set[str], done: dict[str, TaskState]
    ) -> tuple[list[TaskState], list[str]]:
        """The known tasks of a submit (by state), and the ids to watch for its sender."""
        known: list[TaskState] = []
        watched: list[str] = []
        for spec in msg.tasks:
            final = done.get(spec.id)
            if final is not None:
                known.append(_without_result(final))
                if msg.watch:
                    self.push(ident, [final])
                continue
            if spec.id in new:
                new.discard(spec.id)  # a second copy in this message is reported as known
            else:
                live = self.book.get(spec.id)
                assert live is not None
                known.append(_without_result(live.view()))
            watched.append(spec.id)
        return known, watched

    def visible(self, task: Live, viewer: str | None) -> bool:
        """May ``viewer`` (a client key; ``None``: everyone) see ``task``?"""
        return viewer is None or task.owner == viewer

    def ran_by(self, task: Live) -> tuple[str, int]:
        """The name and skill of the worker ``task``'s attempt is assigned to, for a result
        the manager writes (``("", 0)`` when queued, or its worker is gone)."""
        rec = self.admin.registry.get(task.worker_id) if task.worker_id else None
        return ("", 0) if rec is None else (rec.name, rec.skill)

    # ------------------------------------------------------------------ workers

    def _on_results(self, ident: bytes, msg: Results) -> None:
        rec = self.admin.member(ident)
        if rec is None:
            self.admin.unknown(ident)
            return
        done: list[tuple[int, Live, TaskResult]] = []
        now = self.admin.clock()
        for result in msg.results:
            if result.worker_id != rec.id or result.worker != rec.name:
                # Recorded under the registered worker, never what the message claims.
                result = dataclasses.replace(result, worker=rec.name, worker_id=rec.id)
            if rec.key and rec.running.get(result.task_id) != result.attempt:
                # With CURVE only the registration that holds the attempt reports it (after a
                # restart another key may register the id; the orphans stay its worker's).
                outcome, task = Outcome.STALE, None
                self.book.stale += 1
            else:
                outcome, task = self.book.record(result, rec.id, now)
            if rec.running.get(result.task_id) == result.attempt:
                del rec.running[result.task_id]
            if task is not None:
                rec.completed += 1
                self._timed(task.spec.kind, result)
                if outcome is Outcome.RETRY:  # runs again after its backoff (``on_tick``)
                    due = time.time() + (task.due or now) - now
                    self.store.retrying(task.seq, result, task.retried, due)
                    self.stats.recorded([(task.seq, task, result)])
                    self.stats.reruns["retry"] += 1
                else:
                    done.append((task.seq, task, result))
                continue
            if outcome is Outcome.UNKNOWN and self.store.final([result.task_id]):
                outcome = Outcome.DUPLICATE
                self.book.duplicates += 1
            self.admin.counters[f"results_{outcome.value}"] += 1
            if self._ignored.allow(rec.id):
                logger.info(
                    "{} result for task {} attempt {} from {} ignored",
                    outcome.value,
                    result.task_id[:64],
                    result.attempt,
                    rec.name,
                    task=result.task_id[:64],
                    worker=rec.name,
                )
        self._record(done)
        for data in wire.result_ack(msg.results, self.config.max_message_bytes):
            self.admin.post(ident, data)
        self.schedule()

    def _timed(self, kind: str, result: TaskResult) -> None:
        """Keep the recent seconds per task of ``kind`` (it decides prefetching)."""
        took = result.finished - result.started
        if result.started and math.isfinite(took) and 0 <= took <= LONGEST_TASK:
            before = self.durations.get(kind)
            self.durations[kind] = took if before is None else before + 0.1 * (took - before)

    def _record(self, done: list[tuple[int, Live, TaskResult]]) -> None:
        """Final results: to the store, and to the clients watching them."""
        if not done:
            return
        self.store.finished([(seq, task.spec, result, task.owner) for seq, task, result in done])
        self.stats.recorded(done)
        for _, task, result in done:
            logger.debug(
                "task {} {} on {} (attempt {})",
                result.task_id,
                result.status,
                result.worker,
                result.attempt,
                task=result.task_id,
                worker=result.worker or result.worker_id,
            )
            clients = self.watchers.finished(task.spec.id)
            state = None
            for client, brief in clients.items():
                if brief:
                    self._briefs.setdefault(client, []).append((task.spec.id, result.status))
                    continue
                if state is None:
                    state = wire.final_state(task.spec, result)
                self._pushes.setdefault(client, []).append(state)

    def push(self, client: bytes, states: list[TaskState]) -> None:
        """Send ``client`` these final states in ``finished`` messages after the commit."""
        self._pushes.setdefault(client, []).extend(map(_task_state, states))

    # ------------------------------------------------------------------ hooks

    def on_joined(self, rec: AgentRecord, old: AgentRecord | None, msg: Register) -> None:
        held(self, rec, old, msg)

    def on_ready(self, rec: AgentRecord) -> None:
        if not self._gate_open:
            ready = len(self._task_workers())
            logger.info("{}/{} workers connected", ready, self.config.expect_workers)
            if ready >= self.config.expect_workers:
                self._open_gate(f"all {self.config.expect_workers} expected workers connected")
        self.schedule()

    def on_lost(self, rec: AgentRecord, reason: str) -> None:
        given_up: list[tuple[int, Live, TaskResult]] = []
        if rec.running:
            logger.info(
                "{} held {} task(s): back to the queue", rec.name, len(rec.running), worker=rec.name
            )
        for task_id in list(rec.running):
            release(self, task_id, f"{rec.name} {reason}", given_up)
        rec.running.clear()
        self._record(given_up)
        self.schedule()

    def on_tick(self, now: float) -> None:
        opened = not self._gate_open and now - self.admin.started >= self.config.expect_timeout
        if opened:
            self._open_gate(
                f"only {len(self._task_workers())} of {self.config.expect_workers} expected "
                f"workers connected within {self.config.expect_timeout:g}s"
            )
        given_up = self.unmatched.settle(now)
        orphans = self.orphans.expired(now)
        if orphans:
            logger.warning("{} task(s) whose worker did not come back re-queued", len(orphans))
        for task_id, worker_id in orphans:
            release(self, task_id, f"{worker_id} did not return after a restart", given_up)
        overdue = self.book.overdue(now)
        for task in overdue:
            worker = self.admin.registry.get(task.worker_id)
            if worker is not None:
                worker.running.pop(task.spec.id, None)
            self.orphans.forget(task.spec.id)
            result = self.book.give_up(
                task,
                ResultStatus.TIMEOUT,
                "no result by the deadline",
                time.time(),
                self.ran_by(task),
            )
            logger.warning(
                "task {} timed out on the manager's deadline",
                task.spec.id,
                task=task.spec.id,
                worker=result.worker or result.worker_id,
            )
            given_up.append((task.seq, task, result))
        self._record(given_up)
        ripe = self.book.ripe(now)  # retries whose backoff is over
        if orphans or overdue or opened or ripe:
            self.schedule()
        self.watchers.expire()

    def before_ack(self) -> None:
        self.stats.commit(self.store)  # timed
        pushes, self._pushes = self._pushes, {}
        epoch, limit = self.admin.epoch, self.config.max_message_bytes
        for client, states in pushes.items():  # after the commit: never a result that may vanish
            for data in wire.finished(epoch, states, limit):
                self.admin.post(client, data)
        briefs, self._briefs = self._briefs, {}
        for client, done in briefs.items():
            for data in wire.finished_brief(epoch, done, limit):
                self.admin.post(client, data)

    def on_close(self) -> None:
        self.store.close()

    def on_revoked(self, keys: set[str]) -> None:
        """Clients whose keys were removed get no more pushes."""
        self.watchers.drop_keys(keys)

    # ------------------------------------------------------------------ placement

    def _task_workers(self) -> list[AgentRecord]:
        return [r for r in self.admin.registry.connected() if r.capacity > 0]

    def _open_gate(self, why: str) -> None:
        self._gate_open = True
        logger.info("{} after {:.2f}s; assigning", why, self.admin.clock() - self.admin.started)

    def schedule(self) -> None:
        """Assign what can start now; the assignments leave at the next flush, before its
        commit (PROTOCOL.md §9.5: a restarted manager adopts what a worker holds)."""
        if not self._gate_open or not self.book.queued:
            return
        short = {kind for kind, took in self.durations.items() if took < SHORT_TASK}
        placed = place(
            self.book,
            self.admin.registry,
            policy=self.config.policy,
            fallback=self.config.unmatched == "strongest",
            prefetch=self.config.prefetch,
            prefetch_kinds=short,
            now=self.admin.clock(),
        )
        epoch, limit = self.admin.epoch, self.config.max_message_bytes
        for wid, tasks in placed.items():
            rec = self.admin.registry.get(wid)
            assert rec is not None  # placement only picks registered workers
            self.store.assigned((task.seq, task.attempt, wid, rec.key) for task in tasks)
            self.stats.assignments += len(tasks)
            jobs = [(task.spec, task.attempt) for task in tasks]
            for data in wire.assign(epoch, jobs, limit):
                # Not held for the commit: a worker that holds an uncommitted assignment
                # says so when it registers again, and the restarted manager adopts it.
                self.admin.endpoint.post(rec.route, data, early=True)


_task_state = encoder(TaskState)


def _without_result(state: TaskState) -> TaskState:
    """A ``submit_reply`` lists known tasks by id and state only (``tasks`` tells the rest)."""
    return TaskState(id=state.id, state=state.state, attempt=state.attempt)
