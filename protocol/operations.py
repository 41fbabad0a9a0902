"""The messages of operator actions: cancel, retry and purge tasks, read an attempt history.

Clients send ``cancel``, ``retry``, ``purge`` and ``history``; the manager
answers with ``action_reply``, ``purge_reply`` and ``history_reply``, and
tells a worker to stop attempts it no longer wants with ``withdraw``.  See
PROTOCOL.md §9.12 for the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from protocol.base import Message
from protocol.records import Refusal, ResultKey, TaskResult, TaskState


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequest(Message):
    """Client → manager: cancel these tasks (queued or running); each is recorded
    ``cancelled`` at once."""

    TYPE: ClassVar[str] = "cancel"
    req: int
    ids: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryRequest(Message):
    """Client → manager: run these finished tasks again, as a new attempt each."""

    TYPE: ClassVar[str] = "retry"
    req: int
    ids: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionReply(Message):
    """Manager → client: what a ``cancel`` or ``retry`` did, id by id.

    ``acted`` holds the tasks it acted on, as they stand now (``id``,
    ``state`` and ``attempt`` only); ``refused`` the others, with the reason.
    """

    TYPE: ClassVar[str] = "action_reply"
    req: int
    acted: list[TaskState]
    refused: list[Refusal]


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeRequest(Message):
    """Client → manager: forget finished tasks with this result that finished at
    least ``older_than`` seconds ago (0: all of them)."""

    TYPE: ClassVar[str] = "purge"
    req: int
    state: str
    older_than: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeReply(Message):
    TYPE: ClassVar[str] = "purge_reply"
    req: int
    purged: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRequest(Message):
    """Client → manager: every recorded attempt of one task."""

    TYPE: ClassVar[str] = "history"
    req: int
    id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryReply(Message):
    """Manager → client: the task (``unknown`` if it is not known) and the results of
    its attempts, oldest first, the final one last; ``omitted`` of the oldest did not fit."""

    TYPE: ClassVar[str] = "history_reply"
    req: int
    task: TaskState
    attempts: list[TaskResult] = field(default_factory=list)
    omitted: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdraw(Message):
    """Manager → worker: stop these attempts (cancelled); their results are not wanted."""

    TYPE: ClassVar[str] = "withdraw"
    epoch: str
    keys: list[ResultKey]


OPERATIONS: tuple[type[Message], ...] = (
    CancelRequest,
    RetryRequest,
    ActionReply,
    PurgeRequest,
    PurgeReply,
    HistoryRequest,
    HistoryReply,
    Withdraw,
)
