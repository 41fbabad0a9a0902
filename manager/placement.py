"""Placement in bulk: which connected worker runs which queued task.  Pure; no I/O.

Tasks are taken oldest first across the ``(kind, difficulty)`` queues, and
only from queues that some worker with room can take: a queue nobody can
serve is never looked at (it is *parked* until a worker that can take it
joins or frees a slot).  Each task goes to the worker the policy prefers
(``manager.scheduler.KEYS``) among those that advertise its kind and are
skilled enough; a task that lost its worker before avoids that worker when
another can take it.

Room comes in two rounds: first up to each worker's ``capacity`` (what runs
at once), then, for the ``prefetch_kinds`` only (short tasks), up to
``capacity * (1 + prefetch)``: jobs that wait on the worker for a slot, so
it never runs dry while the next assignment travels.  A worker with free
capacity is always served before any worker's prefetch, and long tasks are
never prefetched, so none waits behind another while a free worker could
run it.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from manager.registry import AgentRecord
from manager.scheduler import KEYS, Key
from manager.taskbook import Live, QueueKey, TaskBook
from protocol import AgentState


@dataclass(slots=True, eq=False)
class Seat:
    """A worker as placement sees it: its load counted as jobs are handed out."""

    rec: AgentRecord
    running: int
    room: int = 0

    @property
    def id(self) -> str:
        return self.rec.id


Placed = dict[str, list[Live]]


def place(
    book: TaskBook,
    agents: Iterable[AgentRecord],
    *,
    policy: str,
    fallback: bool,
    prefetch: int = 0,
    prefetch_kinds: Collection[str] = (),
    now: float,
) -> Placed:
    """Start what can start now; returns the started tasks by worker id.

    Each chosen worker's ``running`` map gets its new jobs.
    """
    seats = [
        Seat(rec=r, running=len(r.running))
        for r in agents
        if r.capacity > 0 and r.state == AgentState.CONNECTED
    ]
    placed: Placed = {}
    if not seats or not book.queued:
        return placed
    key = KEYS[policy]
    for seat in seats:
        seat.room = seat.rec.capacity - seat.running
    _fill(book, seats, key, fallback, now, placed, None)
    if prefetch and prefetch_kinds and book.queued:
        for seat in seats:
            seat.room = seat.rec.capacity * (1 + prefetch) - seat.running
        _fill(book, seats, key, fallback, now, placed, prefetch_kinds)
    return placed


def _fill(
    book: TaskBook,
    seats: list[Seat],
    key: Key,
    fallback: bool,
    now: float,
    placed: Placed,
    kinds: Collection[str] | None,
) -> None:
    queues = book.queues()
    choosers: dict[QueueKey, _Chooser] = {}
    heads = []
    for qkey, queue in queues.items():
        if kinds is not None and qkey[0] not in kinds:
            continue
        chooser = _chooser(qkey, seats, key, fallback)
        if chooser is not None:
            choosers[qkey] = chooser
            heads.append((queue[0].seq, qkey))
    heapq.heapify(heads)
    while heads:
        _, qkey = heapq.heappop(heads)
        queue = queues[qkey]
        seat = choosers[qkey].pick(queue[0])
        if seat is None:
            continue  # every worker that can take this queue is full: it waits
        task = queue.popleft()
        seat.rec.running[task.spec.id] = book.start(task, seat.id, now)
        seat.running += 1
        seat.room -= 1
        placed.setdefault(seat.id, []).append(task)
        if queue:
            heapq.heappush(heads, (queue[0].seq, qkey))


def _chooser(qkey: QueueKey, seats: list[Seat], key: Key, fallback: bool) -> _Chooser | None:
    kind, difficulty = qkey
    of_kind = [s for s in seats if kind in s.rec.kinds]
    capable = [s for s in of_kind if s.rec.skill >= difficulty]
    if capable:
        return _Chooser(capable, key, strongest_first=False)
    if fallback and of_kind:  # nobody connected is skilled enough: the strongest tries
        return _Chooser(of_kind, key, strongest_first=True)
    return None


class _Chooser:
    """The policy's preferred seat with room, from a heap whose stale entries are refreshed."""

    def __init__(self, seats: list[Seat], key: Key, strongest_first: bool) -> None:
        self._key = key
        self._strongest = strongest_first
        self._heap = [(self._rank(s), i, s) for i, s in enumerate(seats) if s.room > 0]
        heapq.heapify(self._heap)

    def _rank(self, seat: Seat) -> tuple[float, ...]:
        rank = self._key(seat.rec.skill, seat.running, seat.rec.capacity)
        return (-seat.rec.skill, *rank) if self._strongest else rank

    def pick(self, task: Live) -> Seat | None:
        passed: list[tuple[tuple[float, ...], int, Seat]] = []
        chosen: Seat | None = None
        while self._heap:
            rank, i, seat = heapq.heappop(self._heap)
            if seat.room <= 0:
                continue  # full (it took work from another queue): dropped
            current = self._rank(seat)
            if current != rank:  # its load changed since it was pushed
                heapq.heappush(self._heap, (current, i, seat))
                continue
            if task.tried and seat.id in task.tried:
                passed.append((rank, i, seat))  # lost this task before: others first
                continue
            chosen = seat
            passed.append((rank, i, seat))
            break
        if chosen is None and passed:
            chosen = passed[0][2]  # only workers that lost it before: the preferred one
        for entry in passed:
            heapq.heappush(self._heap, entry)
        return chosen
