"""Every message on the wire, one frozen dataclass each.

A message travels as one msgpack map: ``{"type": TYPE, **fields}``.  Nested
records (``TaskSpec``, ``Job``, ``TaskResult`` ...: ``protocol.records``) are
plain maps of their fields.  See PROTOCOL.md for sockets, frames and the
conversation rules.  The operator actions (``cancel``, ``retry``, ``purge``,
``history`` and the manager's ``withdraw``) are in ``protocol.operations``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from protocol.base import Message as Message  # re-exported: the base of every message
from protocol.operations import OPERATIONS
from protocol.records import (
    AgentRef,
    Job,
    ResultKey,
    TaskResult,
    TaskSpec,
    TaskState,
    WorkerInfo,
)
from protocol.states import RESULT_STATUSES

# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True, kw_only=True)
class Register(Message):
    """Agent → manager (DEALER): join, or re-join after a manager restart."""

    TYPE: ClassVar[str] = "register"
    version: int
    agent_id: str
    name: str
    role: str = "worker"
    workspace_id: str
    skill: int = 0
    capacity: int = 1
    kinds: list[str] = field(default_factory=list)
    epoch: str = ""
    time: int = 0
    holding: list[ResultKey] = field(default_factory=list)
    host: str = ""  # the agent's host name (informational: status, inspect)
    pid: int = 0  # the agent's process id (informational)


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome(Message):
    """Manager → agent: registration accepted; now prove the SUB receives."""

    TYPE: ClassVar[str] = "welcome"
    version: int
    manager_id: str
    manager_name: str
    epoch: str
    pub_endpoint: str
    heartbeat_interval: float
    liveness: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe(Message):
    """Manager → one agent, on PUB: proves that agent's SUB receives."""

    TYPE: ClassVar[str] = "probe"
    agent_id: str
    epoch: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready(Message):
    """Agent → manager: the probe arrived on SUB; the agent is connected."""

    TYPE: ClassVar[str] = "ready"
    epoch: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat(Message):
    """Either direction on ROUTER/DEALER.  Any message counts as proof of life."""

    TYPE: ClassVar[str] = "heartbeat"
    epoch: str
    time: int
    running: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye(Message):
    """Either direction: the sender is leaving (graceful stop)."""

    TYPE: ClassVar[str] = "bye"
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Drain(Message):
    """Worker → manager: stopping gracefully; assign nothing new, in-flight work goes on."""

    TYPE: ClassVar[str] = "drain"
    grace: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Joined(Message):
    """Manager → all, on PUB: an agent became connected."""

    TYPE: ClassVar[str] = "joined"
    agent: AgentRef


@dataclass(frozen=True, slots=True, kw_only=True)
class Left(Message):
    """Manager → all, on PUB: an agent left or was declared lost."""

    TYPE: ClassVar[str] = "left"
    agent: AgentRef
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Roster(Message):
    """Manager → one agent, right after it is connected: who else is connected."""

    TYPE: ClassVar[str] = "roster"
    agents: list[AgentRef]


@dataclass(frozen=True, slots=True, kw_only=True)
class Direct(Message):
    """Application bytes for one agent; routed by the manager."""

    TYPE: ClassVar[str] = "direct"
    sender: str
    target: str
    seq: int
    time: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Broadcast(Message):
    """Application bytes for every connected agent but the sender."""

    TYPE: ClassVar[str] = "broadcast"
    sender: str
    seq: int
    time: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Assign(Message):
    """Manager → worker: run these jobs (never more than the worker's free capacity)."""

    TYPE: ClassVar[str] = "assign"
    epoch: str
    jobs: list[Job]


@dataclass(frozen=True, slots=True, kw_only=True)
class Results(Message):
    """Worker → manager: final results of attempts; re-sent until acknowledged."""

    TYPE: ClassVar[str] = "results"
    results: list[TaskResult]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultAck(Message):
    """Manager → worker: these results are recorded (or were duplicates)."""

    TYPE: ClassVar[str] = "result_ack"
    keys: list[ResultKey]


@dataclass(frozen=True, slots=True, kw_only=True)
class Submit(Message):
    """Client → manager: queue these tasks.  Idempotent by task id.

    With ``watch`` the manager pushes each of these tasks to the sender in a
    ``finished`` message once it has its final result (also if it had one);
    with ``brief`` too, only its id and result status.
    """

    TYPE: ClassVar[str] = "submit"
    req: int
    tasks: list[TaskSpec]
    watch: bool = False
    brief: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitReply(Message):
    TYPE: ClassVar[str] = "submit_reply"
    req: int
    accepted: list[str]
    known: list[TaskState]
    epoch: str = ""  # the manager instance (it holds the watches of a watched submit)
    #: Accepted tasks no connected worker can run: task id -> why (they wait, or with
    #: the manager's ``--unmatched fail`` were recorded as failed).
    unmatched: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRequest(Message):
    TYPE: ClassVar[str] = "status"
    req: int
    worker: str = ""  # only the agents with this id or name, with every running task id


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReply(Message):
    TYPE: ClassVar[str] = "status_reply"
    req: int
    manager_id: str
    epoch: str
    policy: str
    workers: list[WorkerInfo]
    counts: dict[str, int]
    uptime: float
    manager_name: str = ""
    results: dict[str, int] = field(default_factory=dict)  # final results by status
    rate: float = 0.0  # tasks finished per second over the last minute
    waiting: dict[str, int] = field(default_factory=dict)  # queued tasks by waiting reason


@dataclass(frozen=True, slots=True, kw_only=True)
class TasksRequest(Message):
    """Client → manager: the states of these tasks, or (no ``ids``) a page of every task.

    Pages go in submission order: ``after`` is the ``next`` cursor of the
    previous page (0 for the first).
    """

    TYPE: ClassVar[str] = "tasks"
    req: int
    ids: list[str] = field(default_factory=list)
    after: int = 0
    state: str = ""  # paging only: just tasks in this state (see TASK_FILTERS)


@dataclass(frozen=True, slots=True, kw_only=True)
class TasksReply(Message):
    TYPE: ClassVar[str] = "tasks_reply"
    req: int
    tasks: list[TaskState]
    total: int = 0  # tasks the manager knows
    next: int = 0  # cursor of the next page; 0: this was the last


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch(Message):
    """Client → manager: push these tasks to me (``finished``) when they have a final result.

    The reply carries the ones already final.  Watches belong to the sending
    socket and lapse after a minute without any message from it; ``ids=[]``
    only keeps them alive.  A new manager instance (``epoch``) knows none.
    With ``brief`` the pushes carry only ids and result statuses.
    """

    TYPE: ClassVar[str] = "watch"
    req: int
    ids: list[str] = field(default_factory=list)
    brief: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchReply(Message):
    TYPE: ClassVar[str] = "watch_reply"
    req: int
    epoch: str
    done: list[TaskState]  # watched ids that are already final
    unknown: list[str]  # watched ids this manager never accepted
    watching: int  # ids now watched for the sender


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished(Message):
    """Manager → client (unrequested): watched tasks that now have their final result.

    Full states in ``tasks``; for tasks watched ``brief``, just the ids and
    their result statuses, in ``ids`` and ``statuses`` (same length, same order).
    """

    TYPE: ClassVar[str] = "finished"
    epoch: str
    tasks: list[TaskState]
    ids: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.statuses) != len(self.ids):
            raise ValueError("ids and statuses must have the same length")
        if not RESULT_STATUSES.issuperset(self.statuses):
            raise ValueError(f"statuses must be among {', '.join(sorted(RESULT_STATUSES))}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Message):
    """Any direction: the peer's last message was refused.  ``req`` echoes a request id."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    req: int = 0


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Register,
    Welcome,
    Probe,
    Ready,
    Heartbeat,
    Bye,
    Drain,
    Joined,
    Left,
    Roster,
    Direct,
    Broadcast,
    Assign,
    Results,
    ResultAck,
    Submit,
    SubmitReply,
    StatusRequest,
    StatusReply,
    TasksRequest,
    TasksReply,
    Watch,
    WatchReply,
    Finished,
    Error,
    *OPERATIONS,
)
