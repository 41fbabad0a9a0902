"""Operator actions on tasks: cancel, retry, purge, and reading a task's attempt history.

An ``AdminHooks`` extension attached beside the ``TaskService``
(``manager.server.build``).  It is a layer of its own, not more of the
service, because it is a separate concern (requests that change tasks
after the fact) and the service is the hot path of every task; it works
through the service's book, store and watchers and keeps no state itself.

- ``cancel``: a queued task (also one waiting out a retry backoff) leaves
  the queue; a running one is taken from its worker, which is told to stop
  it (``withdraw``; a process kind's child is killed).  Either way the task
  is recorded ``cancelled`` at once, in this batch: a result its worker
  sends later is a duplicate (acknowledged, not recorded), so each task
  still gets exactly one final result.
- ``retry``: a finished task is queued again as a new attempt, behind the
  tasks already queued (it gets a new place in the submission order); its
  final result joins its history.
- ``purge``: finished tasks with a given result, optionally only those
  that finished long enough ago, are forgotten with their history.
- ``history``: every recorded attempt of one task, the final one last.

With CURVE a client key acts on its own tasks only (another's read as
unknown, as in queries); operator keys act on all.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from loguru import logger

from manager.hooks import AdminHooks, Handler
from manager.queries import long_id
from manager.store import finished_where
from manager.taskbook import Live
from protocol import (
    MAX_ACTION_IDS,
    PURGEABLE,
    ActionReply,
    CancelRequest,
    Error,
    HistoryReply,
    HistoryRequest,
    Message,
    ProtocolError,
    PurgeReply,
    PurgeRequest,
    Refusal,
    ResultKey,
    ResultStatus,
    RetryRequest,
    TaskResult,
    TaskState,
    TaskStatus,
    Withdraw,
    encode,
)
from protocol.codec import encoded_size

if TYPE_CHECKING:
    from manager.service import TaskService

#: Longest ``purge.older_than`` (seconds): about 300 years.
MAX_AGE = 1e10


class TaskActions(AdminHooks):
    def __init__(self, service: TaskService) -> None:
        self.service = service
        self.admin = service.admin

    def message_handlers(self) -> Mapping[type[Message], Handler]:
        return {
            CancelRequest: self._on_cancel,
            RetryRequest: self._on_retry,
            PurgeRequest: self._on_purge,
            HistoryRequest: self._on_history,
        }

    def _ids(self, ident: bytes, msg: CancelRequest | RetryRequest) -> list[str] | None:
        """The request's distinct ids in order; ``None`` (answered) when there are too many."""
        self.service.watchers.heard(ident)
        why = long_id(msg.TYPE, msg.ids)
        if len(msg.ids) > MAX_ACTION_IDS:
            why = f"{msg.TYPE}: at most {MAX_ACTION_IDS} ids per request, got {len(msg.ids)}"
        if why is not None:
            self.admin.post(ident, Error(code="bad_request", message=why, req=msg.req))
            return None
        return list(dict.fromkeys(msg.ids))

    # ------------------------------------------------------------------ cancel

    def _on_cancel(self, ident: bytes, msg: CancelRequest) -> None:
        ids = self._ids(ident, msg)
        if ids is None:
            return
        service, viewer = self.service, self.admin.viewer()
        acted: list[TaskState] = []
        given_up: list[tuple[int, Live, TaskResult]] = []
        withdraw: dict[str, list[ResultKey]] = {}
        now = time.time()
        for task_id in ids:
            task = service.book.get(task_id)
            if task is None or not service.visible(task, viewer):
                continue  # finished or unknown: refused below
            ran_by = service.ran_by(task)  # the worker running it (its result keeps it)
            where = self._take_back(task, withdraw)
            message = f"cancelled {where}"
            result = service.book.give_up(task, ResultStatus.CANCELLED, message, now, ran_by)
            given_up.append((task.seq, task, result))
            acted.append(TaskState(id=task_id, state=TaskStatus.DONE, attempt=task.attempt))
        service._record(given_up)  # durable in this batch; pushed to watchers after the commit
        for worker_id, keys in withdraw.items():
            rec = self.admin.registry.get(worker_id)
            if rec is not None:
                self.admin.post(rec.route, Withdraw(epoch=self.admin.epoch, keys=keys))
        done = {s.id for s in acted}
        refused = self._not_live([i for i in ids if i not in done], viewer, "nothing to cancel")
        self.admin.post(ident, ActionReply(req=msg.req, acted=acted, refused=refused))
        if acted:
            self.admin.counters["tasks_cancelled"] += len(acted)
            logger.info("cancelled {} task(s), {} refused", len(acted), len(refused))
            service.schedule()  # the cancelled tasks' capacity is free

    def _take_back(self, task: Live, withdraw: dict[str, list[ResultKey]]) -> str:
        """Stop counting ``task`` as running on its worker (noting what to withdraw from it);
        returns where it was, for the result's message."""
        if task.state != TaskStatus.RUNNING:
            return "while waiting out a retry backoff" if task.due is not None else "while queued"
        self.service.orphans.forget(task.spec.id)
        rec = self.admin.registry.get(task.worker_id)
        if rec is None:  # an orphan of a restart whose worker has not come back
            return f"while running on {task.worker_id}"
        if rec.running.get(task.spec.id) == task.attempt:
            del rec.running[task.spec.id]
        key = ResultKey(task_id=task.spec.id, attempt=task.attempt)
        withdraw.setdefault(rec.id, []).append(key)
        return f"while running on {rec.name}"

    def _not_live(self, ids: list[str], viewer: str | None, why: str) -> list[Refusal]:
        """Refusals for ids that are not live tasks: finished, or unknown."""
        final = self.service.store.final(ids, viewer) if ids else {}
        refused = []
        for task_id in ids:
            state = final.get(task_id)
            if state is None:
                refused.append(_unknown(task_id))
            else:
                status = state.result.status if state.result is not None else state.state
                text = f"task {task_id[:64]!r} is already done ({status}): {why}"
                refused.append(Refusal(id=task_id, code="bad_state", message=text))
        return refused

    # ------------------------------------------------------------------ retry

    def _on_retry(self, ident: bytes, msg: RetryRequest) -> None:
        ids = self._ids(ident, msg)
        if ids is None:
            return
        service, viewer = self.service, self.admin.viewer()
        refused: dict[str, Refusal] = {}
        for task_id in ids:
            task = service.book.get(task_id)
            if task is None:
                continue
            if not service.visible(task, viewer):
                refused[task_id] = _unknown(task_id)
            else:
                text = (
                    f"task {task_id[:64]!r} is {task.state} (attempt {task.attempt}): only a "
                    "finished task can be retried (cancel it first)"
                )
                refused[task_id] = Refusal(id=task_id, code="bad_state", message=text)
        rows = service.store.done([i for i in ids if i not in refused])
        chosen = []
        for task_id in ids:
            row = rows.get(task_id)
            if row is not None and (viewer is None or row[3] == viewer):
                chosen.append(row)
            elif task_id not in refused:
                refused[task_id] = _unknown(task_id)
        acted = []
        for (_, spec, result, owner), seq in zip(chosen, service.store.reopen(chosen), strict=True):
            service.book.reopen(spec, seq, owner, result.attempt)
            service.done_before[result.status] -= 1  # no longer done
            acted.append(TaskState(id=spec.id, state=TaskStatus.QUEUED, attempt=result.attempt))
        reply = ActionReply(req=msg.req, acted=acted, refused=list(refused.values()))
        self.admin.post(ident, reply)
        if acted:
            self.admin.counters["tasks_retried"] += len(acted)
            logger.info("retrying {} finished task(s), {} refused", len(acted), len(refused))
            service.schedule()

    # ------------------------------------------------------------------ purge

    def _on_purge(self, ident: bytes, msg: PurgeRequest) -> None:
        self.service.watchers.heard(ident)
        why = ""
        if msg.state not in PURGEABLE:
            why = (
                f"purge: state must be one of {', '.join(sorted(PURGEABLE))} "
                "(only finished tasks are purged; cancel queued or running ones first)"
            )
        elif not 0 <= msg.older_than <= MAX_AGE:  # NaN fails too
            why = f"purge: older_than must be 0..{MAX_AGE:g} seconds"
        if why:
            self.admin.post(ident, Error(code="bad_request", message=why, req=msg.req))
            return
        service, state = self.service, msg.state
        where = finished_where(state)
        before = time.time() - msg.older_than if msg.older_than > 0 else None
        purged = service.store.purge(where, before, self.admin.viewer())
        for (status, owner), count in purged.items():
            service.done_before[status] -= count
            service.owned[owner] -= count
        total = sum(purged.values())
        if total:
            self.admin.counters["tasks_purged"] += total
            logger.info(
                "purged {} finished task(s) ({}, older than {:g}s)", total, state, msg.older_than
            )
        self.admin.post(ident, PurgeReply(req=msg.req, purged=total))

    # ------------------------------------------------------------------ history

    def _on_history(self, ident: bytes, msg: HistoryRequest) -> None:
        service = self.service
        service.watchers.heard(ident)
        why = long_id(msg.TYPE, [msg.id])
        if why is not None:
            self.admin.post(ident, Error(code="bad_request", message=why, req=msg.req))
            return
        (state,) = service.queries.states([msg.id], self.admin.viewer())
        attempts = [] if state.state == TaskStatus.UNKNOWN else service.store.history(msg.id)
        if state.result is not None:
            attempts.append(state.result)
        bare = TaskState(
            id=state.id,
            state=state.state,
            attempt=state.attempt,
            description=state.description,
            difficulty=state.difficulty,
            worker=state.worker,
        )
        limit = service.config.max_message_bytes
        budget = limit - encoded_size(bare) - 256
        keep = 0  # the newest attempts that fit
        for result in reversed(attempts):
            budget -= encoded_size(result) + 8
            if budget < 0:
                break
            keep += 1
        omitted = len(attempts) - keep
        reply = HistoryReply(req=msg.req, task=bare, attempts=attempts[omitted:], omitted=omitted)
        try:
            self.admin.post(ident, encode(reply, limit))
        except ProtocolError as exc:  # not even the task alone fits
            error = Error(code=exc.code, message=str(exc)[:200], req=msg.req)
            self.admin.post(ident, error)


def _unknown(task_id: str) -> Refusal:
    return Refusal(id=task_id, code="unknown", message=f"no task {task_id[:64]!r}")
