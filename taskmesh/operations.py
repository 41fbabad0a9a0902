"""The ``Client``'s operator actions: cancel, retry, purge, and a task's attempt history.

A mixin of ``taskmesh.client.Client`` (it sends through the client's
``request``), kept apart so that the client module stays about submitting
and waiting.  See PROTOCOL.md §9.12 for what the manager does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from protocol import (
    MAX_ACTION_IDS,
    ActionReply,
    CancelRequest,
    HistoryReply,
    HistoryRequest,
    Message,
    PurgeReply,
    PurgeRequest,
    Refusal,
    RetryRequest,
    TaskState,
)

R = TypeVar("R", bound=Message)


class Operations:
    _req: Iterator[int]

    async def request(self, msg: Message, reply_type: type[R], timeout: float | None = None) -> R:
        raise NotImplementedError  # the Client's

    async def cancel(self, ids: Sequence[str]) -> ActionReply:
        """Cancel these tasks: a queued one never runs, a running one is stopped on its
        worker; each is recorded ``cancelled`` at once.

        The reply's ``acted`` are the tasks cancelled; ``refused`` the others
        with the reason (code ``unknown``, or ``bad_state`` for a task that is
        already done).
        """
        return await self._act(CancelRequest, ids)

    async def retry(self, ids: Sequence[str]) -> ActionReply:
        """Run these finished tasks again, each as a new attempt (their history is kept).

        ``refused``: unknown ids, and (``bad_state``) tasks not finished yet.
        """
        return await self._act(RetryRequest, ids)

    async def _act(
        self, kind: type[CancelRequest] | type[RetryRequest], ids: Sequence[str]
    ) -> ActionReply:
        acted: list[TaskState] = []
        refused: list[Refusal] = []
        req = 0
        for start in range(0, len(ids), MAX_ACTION_IDS):
            chunk = list(ids[start : start + MAX_ACTION_IDS])
            reply = await self.request(kind(req=next(self._req), ids=chunk), ActionReply)
            acted += reply.acted
            refused += reply.refused
            req = reply.req
        return ActionReply(req=req, acted=acted, refused=refused)

    async def purge(self, state: str, older_than: float = 0.0) -> int:
        """Forget finished tasks with this result (``done``: all; ``failed``: all but the
        succeeded; or an exact status) that finished at least ``older_than`` seconds
        ago; returns how many.  Their ids can then be submitted again."""
        msg = PurgeRequest(req=next(self._req), state=state, older_than=older_than)
        return (await self.request(msg, PurgeReply)).purged

    async def history(self, task_id: str) -> HistoryReply:
        """``task_id`` as it stands (``unknown`` if the manager does not know it) and the
        results of its attempts, oldest first, the final one last."""
        return await self.request(HistoryRequest(req=next(self._req), id=task_id), HistoryReply)
