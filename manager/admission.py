"""Whether a ``submit`` is accepted as a whole: owners, the queue limit, task sizes.

A component of the ``TaskService``: ``refusal`` answers an ``error`` for a
submit that must be refused entire (``id_taken`` with CURVE when an id
belongs to another client key, ``busy`` past ``max_queued``, ``too_large``
for a task over ``MAX_ITEM_BYTES``), or ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from protocol import MAX_ITEM_BYTES, Error, Submit, TaskSpec, TaskState
from protocol.codec import encoded_size

if TYPE_CHECKING:
    from manager.service import TaskService


class Admission:
    def __init__(self, service: TaskService) -> None:
        self.service = service

    def refusal(self, msg: Submit, fresh: dict[str, TaskSpec]) -> Error | None:
        """Why the whole ``submit`` is refused (``id_taken``, ``busy``, ``too_large``)."""
        service = self.service
        viewer = service.admin.viewer()
        if viewer is not None:  # CURVE, a client key: another client's ids are not its own
            owned = service.store.final_owned(list(fresh)) if fresh else {}
            taken = self._taken(msg.tasks, owned, viewer)
            if taken is not None:
                service.admin.counters["submits_refused"] += 1
                why = f"task id {taken[:64]!r} belongs to another client; choose another id"
                return Error(code="id_taken", message=why, req=msg.req)
        queued = service.book.queued
        if queued + len(fresh) > service.config.max_queued and self._over_limit(fresh):
            service.admin.counters["submits_refused"] += 1
            why = f"{queued} tasks queued (limit {service.config.max_queued}); retry later"
            return Error(code="busy", message=why, req=msg.req)
        if service.admin.endpoint.current_size > MAX_ITEM_BYTES:  # one task may be too large
            big = next((s.id for s in fresh.values() if encoded_size(s) > MAX_ITEM_BYTES), None)
            if big is not None:
                service.admin.counters["submits_refused"] += 1
                why = f"task {big[:64]!r} is over {MAX_ITEM_BYTES} bytes; pass data by reference"
                return Error(code="too_large", message=why, req=msg.req)
        return None

    def _over_limit(self, fresh: dict[str, TaskSpec]) -> bool:
        """Whether the new ones among ``fresh`` (not already finished) exceed ``max_queued``."""
        service = self.service
        done = service.store.final(list(fresh))
        return service.book.queued + len(fresh) - len(done) > service.config.max_queued

    def _taken(
        self, specs: Sequence[TaskSpec], owned: Mapping[str, tuple[TaskState, str]], viewer: str
    ) -> str | None:
        """The first of these task ids that another client owns, if any."""
        service = self.service
        for spec in specs:
            live = service.book.get(spec.id)
            owner = live.owner if live is not None else owned.get(spec.id, (None, viewer))[1]
            if owner != viewer:
                return spec.id
        return None
