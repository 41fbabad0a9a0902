"""Nothing lost, nothing recorded twice: real processes, real signals."""

from __future__ import annotations

import signal
from collections.abc import Callable

from protocol import TaskSpec
from taskmesh.procs import Proc
from tests.conftest import Cluster
from tests.helpers.ops import (
    HANDLERS,
    connected,
    freeze_or_kill_holder,
    running_on,
    status,
    submit,
    wait_done,
    wait_until,
)


def test_sigkill_worker_mid_task_reruns_elsewhere(cluster: Cluster) -> None:
    cluster.manager()
    workers = {n: cluster.worker(n, 5, *HANDLERS) for n in ("a", "b")}
    wait_until(connected(cluster, 2), what="2 workers")
    submit(cluster, [TaskSpec(id="t", kind="sleep", payload=1.0)])
    victim = freeze_or_kill_holder(cluster, "t", workers, signal.SIGKILL)
    survivor = "b" if victim == "a" else "a"
    (state,) = wait_done(cluster, ["t"])
    assert state.result is not None
    assert state.result.success
    assert state.result.worker == survivor
    assert state.result.attempt == 2
    counts = status(cluster).counts
    assert counts["done"] == 1
    assert counts["duplicates"] == 0


def test_sigstop_worker_late_result_is_a_counted_duplicate(cluster: Cluster) -> None:
    cluster.manager()
    workers = {n: cluster.worker(n, 5, *HANDLERS) for n in ("a", "b")}
    wait_until(connected(cluster, 2), what="2 workers")
    submit(cluster, [TaskSpec(id="t", kind="sleep", payload=0.6)])
    frozen_name = freeze_or_kill_holder(cluster, "t", workers, signal.SIGSTOP)
    frozen, other = workers[frozen_name], "b" if frozen_name == "a" else "a"
    try:
        (state,) = wait_done(cluster, ["t"])
        assert state.result is not None
        assert state.result.worker == other
    finally:
        frozen.signal(signal.SIGCONT)
    # The thawed worker finishes its copy and reports it: ignored, counted, acknowledged.
    wait_until(lambda: status(cluster).counts.get("duplicates", 0) >= 1, what="duplicate")
    (after,) = wait_done(cluster, ["t"])
    assert after.result == state.result
    wait_until(connected(cluster, 2), what="frozen worker back")


def test_sigkill_manager_restart_resumes_without_loss_or_double_recording(
    cluster: Cluster,
) -> None:
    mgr = cluster.manager()
    for name in ("a", "b", "c"):
        cluster.worker(name, 5, *HANDLERS, "--capacity", "2")
    wait_until(connected(cluster, 3), what="3 workers")
    ids = submit(cluster, [TaskSpec(id=f"t{i}", kind="sleep", payload=0.3) for i in range(30)])
    assert len(ids) == 30
    wait_until(lambda: status(cluster).counts["done"] >= 6, what="some tasks done")
    mgr.signal(signal.SIGKILL)
    mgr.stop()
    cluster.manager()
    states = wait_done(cluster, ids, timeout=60)
    assert sorted(s.id for s in states) == sorted(ids)
    assert all(s.result is not None and s.result.success for s in states)
    counts = status(cluster).counts
    assert counts["done"] == 30
    assert counts["queued"] == counts["running"] == 0
    # Submitting again after the restart is idempotent: the journal knows every id.
    assert submit(cluster, [TaskSpec(id="t0", kind="sleep")]) == []


def test_poison_task_is_given_up_after_max_attempts(cluster: Cluster) -> None:
    cluster.manager("--max-attempts", "3")
    for name in ("a", "b", "c", "d"):
        cluster.worker(name, 5, *HANDLERS)
    wait_until(connected(cluster, 4), what="4 workers")
    good = [TaskSpec(id=f"ok{i}", kind="sleep", payload=0.05) for i in range(5)]
    submit(cluster, [TaskSpec(id="poison", kind="crash"), *good])
    states = {s.id: s for s in wait_done(cluster, ["poison", *(t.id for t in good)])}
    poison = states["poison"].result
    assert poison is not None
    assert poison.status == "worker_lost"
    assert not poison.success
    assert poison.attempt == 3
    assert poison.error is not None
    assert "3 attempts" in poison.error.message
    assert all(states[t.id].result.success for t in good)  # type: ignore[union-attr]


def test_timeout_is_recorded_and_worker_keeps_serving(cluster: Cluster) -> None:
    cluster.manager()
    cluster.worker("a", 5, *HANDLERS)
    wait_until(connected(cluster, 1), what="worker")
    submit(
        cluster,
        [
            TaskSpec(id="slow", kind="hang", timeout=0.3),
            TaskSpec(id="slow-proc", kind="hang_proc", timeout=0.5),
        ],
    )
    states = wait_done(cluster, ["slow", "slow-proc"])
    assert [s.result.status for s in states] == ["timeout", "timeout"]  # type: ignore[union-attr]
    submit(cluster, [TaskSpec(id="after", kind="sleep", payload=0.01)])
    (after,) = wait_done(cluster, ["after"])
    assert after.result is not None
    assert after.result.success


def test_thread_task_timeout_is_recorded_and_explained(cluster: Cluster) -> None:
    cluster.manager()
    w = cluster.worker("a", 5, *HANDLERS, "--capacity", "2")
    wait_until(connected(cluster, 1), what="worker")
    submit(cluster, [TaskSpec(id="nap", kind="nap", payload=2.0, timeout=0.3)])
    (state,) = wait_done(cluster, ["nap"])
    assert state.result is not None
    assert state.result.status == "timeout"
    wait_until(lambda: "its thread cannot be stopped" in w.log(), what="warning")
    submit(cluster, [TaskSpec(id="next", kind="sleep", payload=0.01)])
    (after,) = wait_done(cluster, ["next"])
    assert after.result is not None
    assert after.result.success


def test_cpu_bound_task_does_not_starve_heartbeats(cluster: Cluster) -> None:
    # Liveness window 1 s (0.1 s x 10, so a loaded CI machine does not count as a starved
    # loop); the tasks spin for 2 s, twice the window, holding the GIL in the thread.
    cluster.manager("--liveness", "10")
    cluster.worker("a", 5, *HANDLERS, "--capacity", "2")
    wait_until(connected(cluster, 1), what="worker")
    submit(
        cluster,
        [
            TaskSpec(id="thread", kind="spin", payload=2.0),
            TaskSpec(id="proc", kind="spin_proc", payload=2.0),
        ],
    )
    states = wait_done(cluster, ["thread", "proc"])
    assert all(s.result is not None and s.result.success for s in states)
    assert all(s.attempt == 1 for s in states)  # never re-run: the worker was never lost
    assert status(cluster).counts.get("duplicates", 0) == 0


def test_process_kind_runs_in_another_process(cluster: Cluster) -> None:
    cluster.manager()
    w = cluster.worker("a", 5, *HANDLERS)
    wait_until(connected(cluster, 1), what="worker")
    submit(cluster, [TaskSpec(id="who", kind="whoami_proc")])
    (state,) = wait_done(cluster, ["who"])
    assert state.result is not None
    assert state.result.output["worker"] == "a"
    assert state.result.output["pid"] != w.pid


def test_sigterm_drains_in_flight_tasks_and_exits_zero(cluster: Cluster) -> None:
    cluster.manager()
    w = cluster.worker("a", 5, *HANDLERS, "--capacity", "3", "--grace", "10")
    wait_until(connected(cluster, 1), what="worker")
    ids = submit(cluster, [TaskSpec(id=f"d{i}", kind="sleep", payload=1.0) for i in range(3)])
    wait_until(lambda: all(running_on(cluster, i) for i in ids), what="tasks running")
    w.signal(signal.SIGTERM)
    assert w.popen.wait(15) == 0
    states = wait_done(cluster, ids, timeout=5)
    assert all(s.result is not None and s.result.success and s.attempt == 1 for s in states)
    assert "draining 3 task(s)" in w.log()


def test_sigterm_grace_expiry_cancels_and_requeues(cluster: Cluster) -> None:
    cluster.manager()
    w = cluster.worker("a", 5, *HANDLERS, "--grace", "0.2")
    wait_until(connected(cluster, 1), what="worker")
    submit(cluster, [TaskSpec(id="long", kind="sleep", payload=30)])
    wait_until(lambda: running_on(cluster, "long") != "", what="task running")
    w.signal(signal.SIGTERM)
    assert w.popen.wait(10) == 0
    assert "cancelled unfinished task(s): long#1" in w.log()
    cluster.worker("b", 5, *HANDLERS, "--grace", "0")
    wait_until(lambda: running_on(cluster, "long").startswith("b-"), what="re-run on b")


def test_sigterm_manager_flushes_journal_and_exits_zero(cluster: Cluster) -> None:
    mgr = cluster.manager()
    ids = submit(cluster, [TaskSpec(id=f"q{i}") for i in range(5)])
    mgr.signal(signal.SIGTERM)
    assert mgr.popen.wait(10) == 0
    assert "5 queued" in mgr.log()  # the shutdown summary
    cluster.manager()
    rows = status(cluster).counts
    assert rows["queued"] == 5
    assert submit(cluster, [TaskSpec(id=i) for i in ids]) == []


def test_a_process_pool_reuses_warm_processes(cluster: Cluster) -> None:
    cluster.manager()
    w = cluster.worker("a", 5, *HANDLERS, "--process-pool", "1")
    wait_until(connected(cluster, 1), what="worker")
    ids = submit(cluster, [TaskSpec(id=f"who{i}", kind="whoami_proc") for i in range(3)])
    states = wait_done(cluster, ids)
    pids = {s.result.output["pid"] for s in states if s.result is not None}
    assert len(pids) == 1  # one warm process ran all three
    assert w.pid not in pids


def test_every_worker_hears_the_managers_bye_on_each_sigterm(cluster: Cluster) -> None:
    """PROTOCOL.md §9.8: a stopping manager says ``bye`` to every connected worker
    (it once lost about 1 in 5 when its sockets closed before the message left)."""
    mgr = cluster.manager()
    workers = [cluster.worker(f"w{i}", 5) for i in range(3)]
    for stop in range(1, 6):
        wait_until(connected(cluster, 3), what="3 workers connected")
        mgr.signal(signal.SIGTERM)
        assert mgr.popen.wait(10) == 0
        for w in workers:  # told at once, not after a silent liveness window
            wait_until(told(w, stop), timeout=5, what=f"{w.name} told goodbye by stop {stop}")
        mgr = cluster.manager()


def told(worker: Proc, times: int) -> Callable[[], bool]:
    return lambda: worker.log(50_000).count("manager said goodbye") >= times
