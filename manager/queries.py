"""Answers to clients' questions: ``tasks`` (by id or paged), ``watch`` and ``status``.

Live tasks come from the book, finished ones from the store (its recent
results are in memory).  Every answer is posted, so it leaves after the
batch's commit: a client never sees a result that could still vanish.  What
``status`` reports is kept as tasks move, so it costs the same at any size.

With CURVE a client key sees its own tasks only: another client's task reads
as ``unknown``, as if it did not exist, and pages list only its own
(``Admin.viewer``); operator keys, and everyone without CURVE, see all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING

from manager.snapshot import status_reply
from manager.store import finished_where
from manager.waiting import Capable
from protocol import (
    MAX_TASK_ID,
    TASK_FILTERS,
    Error,
    ProtocolError,
    StatusRequest,
    TaskFilter,
    TasksReply,
    TasksRequest,
    TaskState,
    TaskStatus,
    Watch,
    WatchReply,
    encode,
)
from protocol.codec import encode_chunks

if TYPE_CHECKING:
    from manager.service import TaskService
    from manager.taskbook import Live, TaskBook

#: Tasks per ``tasks_reply`` at most (fewer when they do not fit in one message).
MAX_TASKS_REPLY = 1000
#: Cursors beyond any sequence number (SQLite integers are 64-bit signed).
MAX_CURSOR = 2**62


def long_id(kind: str, ids: Iterable[str]) -> str | None:
    """Why a request naming ``ids`` is refused (an id no task can have), or ``None``.

    Such a request is answered ``bad_request`` whole, so no reply ever echoes an
    id longer than ``MAX_TASK_ID``; the error shows a short prefix only.
    """
    for task_id in ids:
        if len(task_id) > MAX_TASK_ID:
            return (
                f"{kind}: a task id is at most {MAX_TASK_ID} characters, "
                f"got one of {len(task_id)} ({task_id[:32]!r}...)"
            )
    return None


class Queries:
    def __init__(self, service: TaskService) -> None:
        self.service = service

    def on_tasks(self, ident: bytes, msg: TasksRequest) -> None:
        service = self.service
        service.watchers.heard(ident)
        viewer = service.admin.viewer()
        why = long_id(msg.TYPE, msg.ids)
        if why is None and msg.state not in TASK_FILTERS:
            why = f"state must be one of {', '.join(sorted(s for s in TASK_FILTERS if s))}"
        if why is not None:
            service.admin.post(ident, Error(code="bad_request", message=why, req=msg.req))
            return
        if msg.ids:
            rows = [(0, state) for state in self.states(msg.ids[:MAX_TASKS_REPLY], viewer)]
            full = False
        else:
            after = min(max(0, msg.after), MAX_CURSOR)
            rows = self.page(after, MAX_TASKS_REPLY, msg.state, viewer)
            full = len(rows) == MAX_TASKS_REPLY
        states = [state for _, state in rows]
        total = self.total(viewer)
        try:  # as many as fit in one message; the client asks again for the rest
            chunk = next(
                encode_chunks(
                    states,
                    lambda s: TasksReply(req=msg.req, tasks=s, total=total),
                    service.config.max_message_bytes - 64,  # room for the cursor
                ),
                (b"", 0),
            )
        except ProtocolError as exc:  # one state alone is over the limit
            service.admin.post(ident, Error(code=exc.code, message=str(exc)[:200], req=msg.req))
            return
        carried = chunk[1]
        more = full or carried < len(states)
        cursor = rows[carried - 1][0] if more and not msg.ids and carried else 0
        reply = TasksReply(req=msg.req, tasks=states[:carried], total=total, next=cursor)
        service.admin.post(ident, reply)

    def states(self, ids: list[str], viewer: str | None = None) -> list[TaskState]:
        """The states of ``ids``, in that order; ``unknown`` for ids never accepted
        (and for those ``viewer`` may not see)."""
        book, seen = self.service.book, self.service.visible
        found = [t for i in ids if (t := book.get(i)) is not None and seen(t, viewer)]
        live = {state.id: state for state in self.views(found)}
        final = self.service.store.final([i for i in ids if i not in live], viewer)
        unknown = TaskStatus.UNKNOWN
        return [
            live.get(i) or final.get(i) or TaskState(id=i, state=unknown, attempt=0) for i in ids
        ]

    def views(self, tasks: list[Live]) -> list[TaskState]:
        """The states of live ``tasks``; a queued one no worker can run says why it waits."""
        capable: Capable | None = None
        out = []
        for task in tasks:
            state = task.view()
            if task.state == TaskStatus.QUEUED:
                capable = capable or self.service.unmatched.capable()
                why = capable.reason(task.spec.kind, task.spec.difficulty)
                if why:
                    state = dataclasses.replace(state, waiting=why)
            out.append(state)
        return out

    def total(self, viewer: str | None) -> int:
        """Tasks the manager knows (``viewer``'s, if given)."""
        if viewer is None:
            return len(self.service.book) + self.done_count()
        return self.service.owned[viewer]

    def page(
        self, after: int, limit: int, state: str = "", viewer: str | None = None
    ) -> list[tuple[int, TaskState]]:
        """Tasks after cursor ``after`` in submission order, live and finished, merged.

        ``state`` keeps only tasks in that state or with that result (``TASK_FILTERS``);
        ``viewer`` only that client key's tasks.
        """
        live: list[tuple[int, TaskState]] = []
        if state in (TaskFilter.ALL, TaskStatus.QUEUED, TaskStatus.RUNNING):
            tasks = _after(self.service.book, after, viewer)
            if state:
                tasks = (t for t in tasks if t.state == state)
            found = list(islice(tasks, limit))
            live = list(zip((t.seq for t in found), self.views(found), strict=True))
        done: list[tuple[int, TaskState]] = []
        if state not in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            done = self.service.store.page(after, limit, finished_where(state), viewer)
        return sorted([*live, *done], key=lambda row: row[0])[:limit]

    def done_count(self) -> int:
        service = self.service
        return sum(service.done_before.values()) + sum(service.book.finished.values())

    def on_watch(self, ident: bytes, msg: Watch) -> None:
        """Watch the live ones of ``ids``; answer with those already final and the unknown."""
        service = self.service
        why = long_id(msg.TYPE, msg.ids)
        if why is not None:
            service.watchers.heard(ident)
            service.admin.post(ident, Error(code="bad_request", message=why, req=msg.req))
            return
        ids, viewer, book = msg.ids, service.admin.viewer(), service.book
        live = [i for i in ids if (t := book.get(i)) is not None and service.visible(t, viewer)]
        service.watchers.watch(ident, live, service.admin.endpoint.peer_key, msg.brief)
        known = set(live)
        final = service.store.final([i for i in ids if i not in known], viewer)
        unknown = [i for i in ids if i not in known and i not in final][:MAX_TASKS_REPLY]
        done = list(final.values())

        def reply(part: list[TaskState]) -> WatchReply:
            return WatchReply(
                req=msg.req,
                epoch=service.admin.epoch,
                done=part,
                unknown=unknown,
                watching=service.watchers.watching(ident),
            )

        chunks = encode_chunks(done, reply, service.config.max_message_bytes)
        data, carried = next(chunks, (encode(reply([])), 0))
        service.admin.post(ident, data)
        if carried < len(done):  # the rest as pushes
            service.push(ident, done[carried:])

    def on_status(self, ident: bytes, msg: StatusRequest) -> None:
        service = self.service
        reply = status_reply(service, msg.req, msg.worker, service.admin.viewer())
        service.admin.post(ident, reply)


def _after(book: TaskBook, after: int, viewer: str | None) -> Iterator[Live]:
    """Live tasks with ``seq`` above ``after`` (``viewer``'s only, if given), in order."""
    return (t for t in book if t.seq > after and (viewer is None or t.owner == viewer))
