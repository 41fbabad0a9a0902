"""Network faults at the socket level (issue 12): one worker's packets dropped, then restored.

Manager, workers and the test's client run in a private network namespace
(``taskmesh/bench/netns.py``).  The manager binds ``0.0.0.0``; worker ``a``
reaches it at 127.0.0.2 and worker ``b`` at 127.0.0.3, so dropping every
packet to and from 127.0.0.2 partitions ``a`` alone (both its DEALER and its
SUB) while ``b`` and the client (127.0.0.1) carry on.  Skipped where the
machine does not allow namespaces or iptables.

Times are asserted in heartbeat intervals, never in absolute seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from protocol import TaskSpec
from runtime.sockets import port_of
from taskmesh.bench.netns import PrivateNetwork, unavailable
from tests.conftest import Cluster
from tests.helpers.ops import HANDLERS, status, submit, wait_done, wait_until

pytestmark = pytest.mark.slow

A = "127.0.0.2"  # worker a's address of the manager: the one the tests cut
B = "127.0.0.3"  # worker b's: never cut
INTERVAL = 0.2
LIVENESS = 3
WINDOW = INTERVAL * LIVENESS
#: Heal to connected, in heartbeat intervals: "about one interval plus the probe", generously.
REJOIN_INTERVALS = 5


@pytest.fixture
def net() -> Iterator[PrivateNetwork]:
    """The test's own network namespace; request it before ``cluster`` (set up first, left last)."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with PrivateNetwork() as private:
        yield private


def heartbeat(interval: float, liveness: int) -> list[str]:
    return ["--heartbeat-interval", str(interval), "--liveness", str(liveness)]


def start(
    cluster: Cluster, workers: dict[str, str], *, liveness: int = LIVENESS, capacity: int = 1
) -> None:
    """A manager on every address and ``workers`` (name: the address it reaches it at;
    ``a`` has skill 9, the others 3); returns once all are connected."""
    beat = heartbeat(INTERVAL, liveness)
    cluster.manager("--bind", "0.0.0.0", *beat)
    for name, address in workers.items():
        skill = 9 if name == "a" else 3
        cluster.worker(
            name, skill, *HANDLERS, "--host", address, "--capacity", str(capacity), *beat
        )
    wait_until(lambda: all(state(cluster, n) == "connected" for n in workers), what="workers")


def state(cluster: Cluster, name: str) -> str:
    """Worker ``name``'s state as ``taskmesh status`` shows it; ``absent`` if not listed."""
    return next((w.state for w in status(cluster).workers if w.name == name), "absent")


def first_time(check: Callable[[], bool], timeout: float) -> float | None:
    """``time.monotonic()`` when ``check`` first held, polling; ``None`` if not within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.02)
    return None


def task_state(cluster: Cluster, task_id: str = "t") -> tuple[str, int]:
    """``task_id``'s state and attempt: ``("running", 1)`` while its first attempt runs."""

    async def go() -> tuple[str, int]:
        async with cluster.client() as c:
            (task,) = await c.tasks([task_id])
            return task.state, task.attempt

    return cluster.run(go())


def pub_port(cluster: Cluster) -> int:
    info = json.loads((cluster.logs / "manager-1.ready.json").read_text())
    return port_of(info["pub_endpoint"])


def test_worker_is_connected_again_within_heartbeats_of_a_partition_healing(
    net: PrivateNetwork, cluster: Cluster
) -> None:
    start(cluster, {"a": A, "b": B})
    # Long enough for the kernel's SYN retries to have backed off past one second (after
    # four linear 1 s retries on Linux >= 6.7): only a bounded reconnect rejoins at once.
    cut = 8.0
    net.cut(A)
    cut_at = time.monotonic()
    lost = first_time(lambda: state(cluster, "a") != "connected", timeout=cut)
    assert lost is not None, "the manager still shows a as connected during the partition"
    while (left := cut - (time.monotonic() - cut_at)) > 0:
        assert state(cluster, "b") == "connected", "the other worker was hit by a's partition"
        time.sleep(min(left, 0.1))
    assert net.dropped() > 0
    healed = net.heal()
    back = first_time(lambda: state(cluster, "a") == "connected", timeout=15.0)
    assert back is not None, "a never connected again within 15 s of the heal"
    took = (back - healed) / INTERVAL
    assert took <= REJOIN_INTERVALS, f"connected {took:.1f} heartbeat intervals after the heal"


def test_drops_shorter_than_the_liveness_window_keep_the_task_on_its_worker(
    net: PrivateNetwork, cluster: Cluster
) -> None:
    start(cluster, {"a": A}, capacity=4)
    drop = WINDOW * 2 / 3  # as the 2 s out of the default 3 s
    drops = 4  # without the requeue grace each drop lost the worker most of the time (a race)
    between = 2 * WINDOW  # watched after each drop
    hold = drops * (drop + between) + 2 * WINDOW  # t runs through all of it
    # difficulty 8: only a (skill 9) may run it, so a re-run could only show as a new attempt
    submit(cluster, [TaskSpec(id="t", kind="sleep", payload=hold, difficulty=8)])
    wait_until(lambda: task_state(cluster) == ("running", 1), what="t running")
    # A busy worker: results flow all the time, so each drop catches data in flight, which
    # TCP then retransmits 0.2 s and 0.6 s after the loss (the case; an idle
    # worker's next heartbeat may simply go out after the drop).
    stream = int(hold / 0.05) * 3
    submit(cluster, [TaskSpec(id=f"s{i}", kind="sleep", payload=0.05) for i in range(stream)])
    time.sleep(2 * INTERVAL)
    for n in range(drops):
        with net.partition(A):
            time.sleep(drop)
        watch_until = time.monotonic() + between
        while time.monotonic() < watch_until:
            # Done is fine (a loaded machine stretches the drops past t's end), re-queued is not.
            now = task_state(cluster)
            assert now in {("running", 1), ("done", 1)}, f"t after drop {n + 1}: {now}"
            time.sleep(0.05)
    assert net.dropped() > 0
    (done,) = wait_done(cluster, ["t"])
    assert done.result is not None
    assert done.result.success
    assert done.result.worker == "a"
    assert done.result.attempt == 1, f"t ran {done.result.attempt} times"


def test_cut_broadcast_channel_is_noticed_and_repaired(
    net: PrivateNetwork, cluster: Cluster
) -> None:
    start(cluster, {"a": A, "b": B})
    cut = 3.0  # five liveness windows
    cutting = net.cut(A, pub_port(cluster))  # a's DEALER traffic still flows
    cut_at = time.monotonic()
    cluster.worker("c", 3, "--host", "127.0.0.4", *heartbeat(INTERVAL, LIVENESS))
    # c's arrival is broadcast on PUB while a's SUB is cut: a misses a broadcast.
    noticed = first_time(lambda: state(cluster, "a") != "connected", timeout=cut)
    while (left := cut - (time.monotonic() - cut_at)) > 0:  # the SUB stays cut all along
        assert state(cluster, "b") == "connected", "the other worker was hit by a's cut"
        time.sleep(min(left, 0.1))
    healed = net.heal(cutting)
    assert net.dropped() > 0
    assert noticed is not None, "status showed a as connected all through its SUB being cut"
    back = first_time(lambda: state(cluster, "a") == "connected", timeout=15.0)
    assert back is not None, "a never connected again within 15 s of the heal"
    took = (back - healed) / INTERVAL
    assert took <= REJOIN_INTERVALS, f"connected {took:.1f} heartbeat intervals after the heal"
