"""The manager's registry of agents, driven by a fake clock."""

from __future__ import annotations

import pytest

import protocol
from manager.registry import Registry
from protocol import AgentState


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reg(clock: FakeClock) -> Registry:
    return Registry(clock, interval=1.0, liveness=3)


def test_window_is_interval_times_liveness(clock: FakeClock) -> None:
    assert Registry(clock, interval=0.5, liveness=4).window == pytest.approx(2.0)


def test_add_registers_a_pending_agent(reg: Registry, clock: FakeClock) -> None:
    rec, old = reg.add(
        "w1", name="Worker-1", role="worker", skill=6, capacity=2, kinds=frozenset({"simulate"})
    )
    assert old is None
    assert (rec.id, rec.name, rec.role, rec.skill, rec.capacity) == (
        "w1",
        "Worker-1",
        "worker",
        6,
        2,
    )
    assert rec.state == AgentState.PENDING
    assert rec.last_seen == rec.registered == clock.now
    assert len(reg) == 1
    assert "w1" in reg
    assert "w2" not in reg
    assert reg.get("w1") is rec
    assert reg.get("w2") is None


def test_pending_and_connected_are_separate(reg: Registry) -> None:
    reg.add("a", name="A", role="worker", capacity=1)
    reg.add("b", name="B", role="worker", capacity=1)
    reg.set_state("b", AgentState.CONNECTED)
    assert [r.id for r in reg.pending()] == ["a"]
    assert [r.id for r in reg.connected()] == ["b"]
    reg.set_state("a", AgentState.CONNECTED)
    assert reg.pending() == []
    assert sorted(r.id for r in reg.connected()) == ["a", "b"]


def test_set_state_of_unknown_agent_is_none(reg: Registry) -> None:
    assert reg.set_state("ghost", AgentState.CONNECTED) is None
    assert len(reg) == 0


# --------------------------------------------------------------------------- liveness


def test_silent_agent_expires_after_interval_times_liveness(
    reg: Registry, clock: FakeClock
) -> None:
    reg.add("w1", name="W", role="worker")
    clock.now += 3.0
    assert reg.expired() == []  # exactly the window: not yet
    clock.now += 0.01
    assert [r.id for r in reg.expired()] == ["w1"]
    assert "w1" in reg  # expired() reports, the caller removes


def test_touch_keeps_an_agent_alive(reg: Registry, clock: FakeClock) -> None:
    reg.add("w1", name="W", role="worker")
    for _ in range(10):
        clock.now += 2.5
        assert reg.touch("w1") is not None
        assert reg.expired() == []
    rec = reg.get("w1")
    assert rec is not None
    assert rec.last_seen == clock.now
    assert rec.registered == clock.now - 25.0


def test_only_silent_agents_expire(reg: Registry, clock: FakeClock) -> None:
    reg.add("quiet", name="Q", role="worker")
    reg.add("chatty", name="C", role="worker")
    reg.set_state("chatty", AgentState.CONNECTED)
    clock.now += 2.0
    reg.touch("chatty")
    clock.now += 2.0
    assert [r.id for r in reg.expired()] == ["quiet"]


def test_connected_agents_expire_too(reg: Registry, clock: FakeClock) -> None:
    reg.add("w1", name="W", role="worker")
    reg.set_state("w1", AgentState.CONNECTED)
    clock.now += 5.0
    assert [r.id for r in reg.expired()] == ["w1"]


def test_silent_agent_is_unreachable_then_expires_after_the_grace(clock: FakeClock) -> None:
    reg = Registry(clock, interval=1.0, liveness=3, grace=2.0)
    rec, _ = reg.add("w1", name="W", role="worker")
    reg.set_state("w1", AgentState.CONNECTED)
    clock.now += 3.01
    assert reg.mark_unreachable() == [rec]
    assert reg.mark_unreachable() == []  # reported once
    assert rec.state == AgentState.UNREACHABLE
    assert rec.free == 0  # no new work
    assert rec.announced  # still a member
    assert reg.expired() == []
    clock.now += 2.0
    assert reg.expired() == [rec]


def test_any_message_restores_an_unreachable_agent(reg: Registry, clock: FakeClock) -> None:
    rec, _ = reg.add("w1", name="W", role="worker", capacity=2)
    reg.set_state("w1", AgentState.DRAINING)
    clock.now += 4.0
    reg.mark_unreachable()
    assert rec.info(clock()).state == "unreachable"  # as status shows it
    reg.touch("w1")
    assert rec.state == AgentState.DRAINING


def test_a_pending_agent_that_went_unreachable_is_not_announced(
    reg: Registry, clock: FakeClock
) -> None:
    rec, _ = reg.add("w1", name="W", role="worker")
    clock.now += 4.0
    reg.mark_unreachable()
    assert not rec.announced
    assert reg.connected() == []
    reg.touch("w1")
    assert reg.pending() == [rec]


def test_an_agent_that_missed_a_message_gets_no_grace(clock: FakeClock) -> None:
    reg = Registry(clock, interval=1.0, liveness=3, grace=10.0)
    rec, _ = reg.add("w1", name="W", role="worker")
    rec.missed = True
    clock.now += 3.01
    assert reg.expired() == [rec]


def test_touch_unknown_agent_is_none(reg: Registry) -> None:
    assert reg.touch("ghost") is None
    assert len(reg) == 0


def test_removed_agent_no_longer_expires(reg: Registry, clock: FakeClock) -> None:
    reg.add("w1", name="W", role="worker")
    removed = reg.remove("w1")
    assert removed is not None
    assert removed.id == "w1"
    assert reg.remove("w1") is None
    clock.now += 100.0
    assert reg.expired() == []
    assert len(reg) == 0


# --------------------------------------------------------------------------- re-registration


def test_re_add_returns_the_replaced_record_and_starts_fresh(
    reg: Registry, clock: FakeClock
) -> None:
    first, _ = reg.add("w1", name="W", role="worker", skill=3, capacity=2)
    reg.set_state("w1", AgentState.CONNECTED)
    first.running["t1"] = 1
    first.completed = 4
    clock.now += 10.0
    second, old = reg.add("w1", name="W", role="worker", skill=7, capacity=4)
    assert old is first
    assert old.running == {"t1": 1}  # the caller can release what the old one held
    assert second is not first
    assert (second.state, second.skill, second.running, second.completed) == (
        AgentState.PENDING,
        7,
        {},
        0,
    )
    assert second.registered == clock.now
    assert len(reg) == 1
    assert reg.get("w1") is second


# --------------------------------------------------------------------------- capacity


def test_free_capacity_only_when_connected(reg: Registry) -> None:
    rec, _ = reg.add("w1", name="W", role="worker", capacity=3)
    assert rec.free == 0  # pending
    reg.set_state("w1", AgentState.CONNECTED)
    assert rec.free == 3
    rec.running["t1"] = 1
    assert rec.free == 2
    reg.set_state("w1", AgentState.DRAINING)
    assert rec.free == 0


def test_free_capacity_is_never_negative(reg: Registry) -> None:
    rec, _ = reg.add("w1", name="W", role="worker", capacity=1)
    reg.set_state("w1", AgentState.CONNECTED)
    rec.running.update({"t1": 1, "t2": 1})
    assert rec.free == 0


def test_client_without_capacity_has_no_free_slots(reg: Registry) -> None:
    rec, _ = reg.add("c1", name="Client", role="client")
    reg.set_state("c1", AgentState.CONNECTED)
    assert rec.capacity == 0
    assert rec.free == 0


# --------------------------------------------------------------------------- views


def test_info_reports_the_worker_for_status(reg: Registry, clock: FakeClock) -> None:
    rec, _ = reg.add(
        "w1",
        name="Worker-1",
        role="worker",
        skill=5,
        capacity=2,
        kinds=frozenset({"simulate", "render"}),
    )
    reg.set_state("w1", AgentState.CONNECTED)
    rec.running["t1"] = 1
    rec.completed = 3
    info = rec.info(clock.now + 2.5)
    assert info == protocol.WorkerInfo(
        id="w1",
        name="Worker-1",
        role="worker",
        skill=5,
        capacity=2,
        kinds=["render", "simulate"],
        running=1,
        completed=3,
        state=AgentState.CONNECTED,
        silent_for=2.5,
    )
    reply = protocol.StatusReply(
        req=1,
        manager_id="m",
        epoch="e",
        policy="best-fit",
        workers=[info],
        counts={},
        uptime=0.0,
    )
    assert protocol.decode(protocol.encode(reply)) == reply


def test_detail_is_the_ceylon_agent_detail(reg: Registry) -> None:
    rec, _ = reg.add("w1", name="Worker-1", role="worker")
    assert rec.detail == protocol.AgentDetail(name="Worker-1", id="w1", role="worker")


def test_iterating_is_safe_while_removing(reg: Registry) -> None:
    for i in range(5):
        reg.add(f"w{i}", name=f"W{i}", role="worker")
    for rec in reg:
        reg.remove(rec.id)
    assert len(reg) == 0
