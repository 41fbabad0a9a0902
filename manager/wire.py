"""The manager's hot messages, encoded straight from what it holds.

``assign``, ``finished`` and ``result_ack`` go out for every task; building a
dataclass per job, state and key only to flatten it again costs more than
the rest of the manager's work.  These functions produce the same bytes as
``protocol.encode`` of the corresponding messages (the tests decode them
back), from the task specs and results the manager already has, each record
flattened once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from protocol import Assign, Finished, ResultAck, TaskResult, TaskSpec, TaskStatus
from protocol.codec import pack_chunks
from protocol.compiled import encoder

_spec = encoder(TaskSpec)
_result = encoder(TaskResult)


def assign(epoch: str, jobs: Sequence[tuple[TaskSpec, int]], max_bytes: int) -> Iterator[bytes]:
    """``assign`` messages for ``(spec, attempt)`` jobs, as many per message as fit."""
    items = [{"task": _spec(spec), "attempt": attempt} for spec, attempt in jobs]
    for data, _ in pack_chunks(
        items, lambda batch: {"type": Assign.TYPE, "epoch": epoch, "jobs": batch}, max_bytes
    ):
        yield data


def final_state(spec: TaskSpec, result: TaskResult) -> dict[str, Any]:
    """A ``TaskState`` map of a finished task."""
    return {
        "id": spec.id,
        "state": TaskStatus.DONE.value,
        "attempt": result.attempt,
        "description": spec.description,
        "difficulty": spec.difficulty,
        "worker": result.worker_id,
        "result": _result(result),
    }


def finished(epoch: str, states: Sequence[dict[str, Any]], max_bytes: int) -> Iterator[bytes]:
    """``finished`` pushes of ``TaskState`` maps, as many per message as fit."""
    for data, _ in pack_chunks(
        states, lambda batch: {"type": Finished.TYPE, "epoch": epoch, "tasks": batch}, max_bytes
    ):
        yield data


def finished_brief(epoch: str, done: Sequence[tuple[str, str]], max_bytes: int) -> Iterator[bytes]:
    """``finished`` pushes of ``(task id, result status)`` pairs only (brief watches)."""

    def wrap(batch: list[tuple[str, str]]) -> dict[str, Any]:
        return {
            "type": Finished.TYPE,
            "epoch": epoch,
            "tasks": [],
            "ids": [task_id for task_id, _ in batch],
            "statuses": [status for _, status in batch],
        }

    for data, _ in pack_chunks(done, wrap, max_bytes):
        yield data


def result_ack(results: Sequence[TaskResult], max_bytes: int) -> Iterator[bytes]:
    """``result_ack`` for these results (their task id and attempt)."""
    keys = [{"task_id": r.task_id, "attempt": r.attempt} for r in results]
    for data, _ in pack_chunks(
        keys, lambda batch: {"type": ResultAck.TYPE, "keys": batch}, max_bytes
    ):
        yield data
