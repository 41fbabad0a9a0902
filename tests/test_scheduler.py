"""Placement policies: pure functions of a task and the workers' load."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from manager.scheduler import POLICIES, Candidate, Policy, best_fit, least_loaded
from protocol import TaskSpec

BOTH = pytest.mark.parametrize("policy", [best_fit, least_loaded], ids=["best-fit", "least-loaded"])


def task(difficulty: int, kind: str = "simulate", id: str = "t") -> TaskSpec:
    return TaskSpec(id=id, difficulty=difficulty, kind=kind)


def worker(
    id: str,
    skill: int,
    *,
    capacity: int = 1,
    running: int = 0,
    kinds: Sequence[str] = ("simulate",),
) -> Candidate:
    return Candidate(id=id, skill=skill, capacity=capacity, running=running, kinds=frozenset(kinds))


def place_all(
    policy: Policy, tasks: list[TaskSpec], workers: list[Candidate], fallback: bool = False
) -> dict[str, str | None]:
    """Place tasks one by one, counting each placement as running (as the manager does)."""
    load = {w.id: w.running for w in workers}
    out: dict[str, str | None] = {}
    for spec in tasks:
        now = [
            Candidate(
                id=w.id, skill=w.skill, capacity=w.capacity, running=load[w.id], kinds=w.kinds
            )
            for w in workers
        ]
        wid = policy(spec, now, (), fallback)
        out[spec.id] = wid
        if wid is not None:
            load[wid] += 1
    return out


SEED_WORKERS = [worker("w3", 3), worker("w6", 6), worker("w9", 9)]
SEED_TASKS = [task(2, id="t2"), task(5, id="t5"), task(8, id="t8")]


def test_policies_table_names_both_policies() -> None:
    assert {"best-fit": best_fit, "least-loaded": least_loaded} == POLICIES


# --------------------------------------------------------------------------- the seed scenario


@BOTH
def test_seed_scenario_uses_three_distinct_matching_workers(policy: Policy) -> None:
    placed = place_all(policy, SEED_TASKS, SEED_WORKERS)
    assert placed == {"t2": "w3", "t5": "w6", "t8": "w9"}


@BOTH
def test_seed_scenario_in_reverse_order_still_matches_skills(policy: Policy) -> None:
    placed = place_all(policy, SEED_TASKS[::-1], SEED_WORKERS)
    assert placed == {"t8": "w9", "t5": "w6", "t2": "w3"}


@BOTH
def test_fourth_task_waits_when_every_worker_is_busy(policy: Policy) -> None:
    placed = place_all(policy, [*SEED_TASKS, task(1, id="t1")], SEED_WORKERS)
    assert placed["t1"] is None


# --------------------------------------------------------------------------- best fit


@pytest.mark.parametrize(
    ("difficulty", "expected"),
    [(1, "w3"), (3, "w3"), (4, "w6"), (6, "w6"), (7, "w9"), (9, "w9"), (10, None)],
)
def test_best_fit_picks_least_skilled_capable_worker(difficulty: int, expected: str | None) -> None:
    assert best_fit(task(difficulty), SEED_WORKERS) == expected


def test_best_fit_ignores_worker_order() -> None:
    assert best_fit(task(4), SEED_WORKERS[::-1]) == "w6"


def test_best_fit_breaks_skill_ties_by_load() -> None:
    workers = [worker("busy", 6, capacity=2, running=1), worker("idle", 6, capacity=2)]
    assert best_fit(task(5), workers) == "idle"


def test_best_fit_prefers_weaker_busy_ish_worker_over_idle_strong_one() -> None:
    workers = [worker("strong", 9, capacity=4), worker("weak", 5, capacity=4, running=3)]
    assert best_fit(task(5), workers) == "weak"
    assert least_loaded(task(5), workers) == "strong"


@BOTH
def test_busy_capable_worker_makes_task_wait_even_if_weaker_is_free(policy: Policy) -> None:
    workers = [worker("w3", 3), worker("w9", 9, running=1)]
    assert policy(task(8), workers, (), False) is None
    assert policy(task(8), workers, (), True) is None  # fallback is only for no capable worker


# --------------------------------------------------------------------------- no capable worker


@BOTH
def test_no_capable_worker_means_task_waits(policy: Policy) -> None:
    workers = [worker("w2", 2), worker("w4", 4)]
    assert policy(task(8), workers, (), False) is None


@BOTH
def test_fallback_runs_on_strongest_free_worker(policy: Policy) -> None:
    workers = [worker("w2", 2), worker("w4", 4), worker("w5", 5, running=1)]
    assert policy(task(8), workers, (), True) == "w4"


@BOTH
def test_fallback_only_considers_workers_of_the_task_kind(policy: Policy) -> None:
    workers = [worker("w2", 2), worker("r7", 7, kinds=["render"])]
    assert policy(task(9), workers, (), True) == "w2"


@BOTH
def test_fallback_respects_avoid_among_strongest(policy: Policy) -> None:
    workers = [worker("a", 4), worker("b", 4), worker("c", 2)]
    assert policy(task(9), workers, {"a"}, True) == "b"


@BOTH
@pytest.mark.parametrize(
    "workers",
    [
        [],
        [worker("w3", 3, running=1)],
        [worker("r3", 3, kinds=["render"])],
    ],
    ids=["none-connected", "all-busy", "other-kind-only"],
)
def test_fallback_without_any_free_worker_waits(policy: Policy, workers: list[Candidate]) -> None:
    assert policy(task(9), workers, (), True) is None


@BOTH
def test_no_workers_means_task_waits(policy: Policy) -> None:
    assert policy(task(1), [], (), False) is None


# --------------------------------------------------------------------------- kinds and capacity


@BOTH
def test_only_workers_advertising_the_kind_are_used(policy: Policy) -> None:
    workers = [worker("sim", 9), worker("render", 9, kinds=["render", "simulate"])]
    assert policy(task(5, kind="render"), workers, (), False) == "render"
    assert policy(task(5, kind="compile"), workers, (), False) is None


@BOTH
def test_full_worker_is_skipped(policy: Policy) -> None:
    workers = [worker("full", 5, capacity=2, running=2), worker("free", 9, capacity=2)]
    assert policy(task(5), workers, (), False) == "free"


@BOTH
def test_worker_with_room_left_is_used(policy: Policy) -> None:
    workers = [worker("w", 5, capacity=3, running=2)]
    assert policy(task(5), workers, (), False) == "w"


@BOTH
def test_zero_capacity_worker_is_never_used(policy: Policy) -> None:
    workers = [worker("client", 10, capacity=0)]
    assert policy(task(1), workers, (), False) is None


@BOTH
def test_capacity_bounds_how_many_tasks_one_worker_gets(policy: Policy) -> None:
    tasks = [task(1, id=f"t{i}") for i in range(5)]
    placed = place_all(policy, tasks, [worker("w", 5, capacity=3)])
    assert list(placed.values()) == ["w", "w", "w", None, None]


# --------------------------------------------------------------------------- avoid


@BOTH
def test_avoid_prefers_another_capable_worker(policy: Policy) -> None:
    workers = [worker("lost-it", 5), worker("other", 8)]
    assert policy(task(5), workers, (), False) == "lost-it"
    assert policy(task(5), workers, {"lost-it"}, False) == "other"


@BOTH
def test_avoided_worker_is_used_when_it_is_the_only_free_capable_one(policy: Policy) -> None:
    workers = [worker("lost-it", 5), worker("busy", 8, running=1), worker("weak", 2)]
    assert policy(task(5), workers, {"lost-it"}, False) == "lost-it"


@BOTH
def test_avoiding_every_capable_worker_falls_back_to_the_policy_choice(policy: Policy) -> None:
    workers = [worker("a", 5), worker("b", 8)]
    assert policy(task(5), workers, {"a", "b"}, False) == "a"


@BOTH
def test_avoid_never_picks_an_incapable_worker(policy: Policy) -> None:
    workers = [worker("lost-it", 6), worker("weak", 2)]
    assert policy(task(5), workers, ["lost-it"], False) == "lost-it"


# --------------------------------------------------------------------------- least loaded


def test_least_loaded_picks_lowest_running_to_capacity_ratio() -> None:
    workers = [
        worker("half", 5, capacity=4, running=2),
        worker("quarter", 9, capacity=4, running=1),
        worker("small-half", 5, capacity=2, running=1),
    ]
    assert least_loaded(task(5), workers) == "quarter"
    assert best_fit(task(5), workers) == "small-half"  # skill, then load, then fewer running


def test_least_loaded_uses_ratio_not_running_count() -> None:
    workers = [worker("big", 5, capacity=10, running=3), worker("small", 5, capacity=2, running=1)]
    assert least_loaded(task(5), workers) == "big"  # 0.3 < 0.5 although 3 > 1 running


def test_least_loaded_breaks_ties_by_lower_skill() -> None:
    workers = [worker("strong", 9, capacity=2, running=1), worker("weak", 6, capacity=4, running=2)]
    assert least_loaded(task(5), workers) == "weak"


def test_least_loaded_still_requires_skill() -> None:
    workers = [worker("idle-weak", 3, capacity=4), worker("busy-strong", 9, capacity=4, running=3)]
    assert least_loaded(task(5), workers) == "busy-strong"


def test_least_loaded_spreads_equal_tasks_across_workers() -> None:
    workers = [worker("a", 5, capacity=2), worker("b", 5, capacity=2)]
    placed = place_all(least_loaded, [task(1, id=f"t{i}") for i in range(4)], workers)
    assert sorted(v for v in placed.values() if v is not None) == ["a", "a", "b", "b"]
    assert placed["t0"] != placed["t1"]


@pytest.mark.parametrize(
    ("capacity", "running", "load"), [(4, 1, 0.25), (2, 2, 1.0), (3, 0, 0.0), (0, 0, 1.0)]
)
def test_candidate_load_is_running_over_capacity(capacity: int, running: int, load: float) -> None:
    assert worker("w", 5, capacity=capacity, running=running).load == pytest.approx(load)
