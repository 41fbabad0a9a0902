"""Placement policies: pure functions from a task and the workers' load to a worker id.

A policy sees only workers that could take the task now (connected, free
capacity, the task's kind advertised).  It returns ``None`` to leave the task
queued.  ``avoid`` names workers that already lost this task: they are used
only when no other candidate is free.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from protocol import TaskSpec


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    skill: int
    capacity: int
    running: int
    kinds: frozenset[str]

    @property
    def load(self) -> float:
        return self.running / self.capacity if self.capacity else 1.0


Policy = Callable[[TaskSpec, Sequence[Candidate], Collection[str], bool], str | None]
#: What a policy prefers, smallest first: a function of ``(skill, running, capacity)``.
Key = Callable[[int, int, int], tuple[float, ...]]


def best_fit_key(skill: int, running: int, capacity: int) -> tuple[float, ...]:
    return (skill, running / capacity if capacity else 1.0, running)


def least_loaded_key(skill: int, running: int, capacity: int) -> tuple[float, ...]:
    return (running / capacity if capacity else 1.0, skill, running)


def _eligible(task: TaskSpec, workers: Sequence[Candidate]) -> list[Candidate]:
    return [w for w in workers if task.kind in w.kinds and w.running < w.capacity]


def _pick(
    task: TaskSpec,
    workers: Sequence[Candidate],
    avoid: Collection[str],
    fallback: bool,
    key: Callable[[Candidate], tuple[float, ...]],
) -> str | None:
    free = _eligible(task, workers)
    if not free:
        return None
    capable = [w for w in free if w.skill >= task.difficulty]
    if not capable:
        if not fallback or any(
            w.skill >= task.difficulty and task.kind in w.kinds for w in workers
        ):
            return None  # a capable worker exists (busy) or the operator chose to wait
        capable = [w for w in free if w.skill == max(x.skill for x in free)]
    fresh = [w for w in capable if w.id not in avoid] or capable
    return min(fresh, key=key).id


def best_fit(
    task: TaskSpec,
    workers: Sequence[Candidate],
    avoid: Collection[str] = (),
    fallback: bool = False,
) -> str | None:
    """The least-skilled capable worker with free capacity; ties go to the less loaded.

    Keeps strong workers free for hard tasks.  With ``fallback`` a task that
    no connected worker is skilled enough for runs on the strongest free
    worker (and will likely fail) instead of waiting.
    """
    return _pick(
        task, workers, avoid, fallback, lambda w: best_fit_key(w.skill, w.running, w.capacity)
    )


def least_loaded(
    task: TaskSpec,
    workers: Sequence[Candidate],
    avoid: Collection[str] = (),
    fallback: bool = False,
) -> str | None:
    """The capable worker with the lowest running/capacity ratio; ties go to the less skilled."""
    return _pick(
        task, workers, avoid, fallback, lambda w: least_loaded_key(w.skill, w.running, w.capacity)
    )


POLICIES: dict[str, Policy] = {"best-fit": best_fit, "least-loaded": least_loaded}
KEYS: dict[str, Key] = {"best-fit": best_fit_key, "least-loaded": least_loaded_key}
