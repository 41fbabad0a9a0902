"""The states the wire reports, one enumeration each.

Values are the strings that travel; a ``StrEnum`` member compares equal to
its string, so decoded messages (plain ``str``) and these members mix freely.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    """Where a task stands (``TaskState.state``)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    UNKNOWN = "unknown"  # in replies only: an id the manager never accepted


class ResultStatus(StrEnum):
    """How one attempt ended (``TaskResult.status``)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the handler reported an expected failure
    ERROR = "error"  # the handler raised
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"  # given up after losing its worker max_attempts times
    NO_HANDLER = "no_handler"
    CANCELLED = "cancelled"  # an operator cancelled the task (written by the manager)


class AgentState(StrEnum):
    """A registered agent as the manager sees it (``WorkerInfo.state``)."""

    PENDING = "pending"  # registered on the DEALER, SUB not yet proven
    CONNECTED = "connected"  # both channels proven: gets work and callbacks
    DRAINING = "draining"  # stopping: no new work, still finishing
    UNREACHABLE = "unreachable"  # silent for the window: no new work, keeps its tasks a grace


class TaskFilter(StrEnum):
    """What ``tasks.state`` and ``purge.state`` may ask for besides a state or a result status.

    ``FAILED`` is also the name of the count of such tasks in ``status.counts``.
    """

    ALL = ""  # every task
    FAILED = "failed"  # done without success: any result status but succeeded


#: Every result status as the plain string that travels (a cheap membership check).
RESULT_STATUSES = frozenset(str(s) for s in ResultStatus)

#: Every result status but ``succeeded``: what ``TaskFilter.FAILED`` selects.
UNSUCCESSFUL = frozenset(RESULT_STATUSES - {ResultStatus.SUCCEEDED})

#: What ``tasks.state`` may ask for when paging: a task state, ``failed`` (done
#: without success), or an exact result status.
TASK_FILTERS = frozenset(
    {*TaskFilter, TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.DONE, *ResultStatus}
)

#: What ``purge.state`` may name: finished tasks only (``done``: every one of them).
PURGEABLE = frozenset(TASK_FILTERS - {TaskFilter.ALL, TaskStatus.QUEUED, TaskStatus.RUNNING})
