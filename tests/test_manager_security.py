"""The manager's security rules in-process: keys, roles, owners, identities, slow peers.

The production admin, task service and journal over the in-memory transport
(``FakeRouter``), with a fake clock; a message's CURVE key is handed in as
ZAP would have named it.  ``tests/test_security.py`` proves the same with
real sockets and CURVE handshakes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from protocol import (
    PROTOCOL_VERSION,
    Assign,
    Broadcast,
    Bye,
    Error,
    Heartbeat,
    Register,
    ResultKey,
    Results,
    ResultStatus,
    StatusReply,
    StatusRequest,
    Submit,
    SubmitReply,
    TaskResult,
    TaskSpec,
    TasksReply,
    TasksRequest,
    Watch,
    WatchReply,
    codec,
)
from runtime.keys import generate, load_public
from tests.helpers.fakes import ManagerHarness


class Ring:
    """Key pairs in allow-list directories; ``key(name)`` is the Z85 text ZAP reports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        generate("manager", root)
        for folder, names in (
            ("workers", ["w1", "w2"]),
            ("clients", ["alice", "bob"]),
            ("operators", ["olga"]),
        ):
            for name in names:
                generate(name, root / folder)

    def key(self, name: str) -> str:
        return load_public(next(self.root.glob(f"*/{name}.key"))).decode()

    def settings(self) -> dict[str, str]:
        return {
            "secret_key": str(self.root / "manager.key_secret"),
            "worker_keys": str(self.root / "workers"),
            "client_keys": str(self.root / "clients"),
            "operator_keys": str(self.root / "operators"),
        }


@pytest.fixture
def ring(tmp_path: Path) -> Ring:
    return Ring(tmp_path / "keys")


@pytest.fixture
def mgr(tmp_path: Path, ring: Ring) -> Iterator[ManagerHarness]:
    harness = ManagerHarness(tmp_path / "journal.db", **ring.settings())
    yield harness
    harness.close()


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[ManagerHarness]:
    """A manager without CURVE."""
    harness = ManagerHarness(tmp_path / "plain.db")
    yield harness
    harness.close()


def register(agent_id: str, **fields: object) -> Register:
    return Register(
        version=PROTOCOL_VERSION,
        agent_id=agent_id,
        name=agent_id,
        workspace_id="taskmesh",
        skill=5,
        capacity=1,
        kinds=["simulate", "echo"],
        **fields,  # type: ignore[arg-type]
    )


def result(task_id: str, worker: str, attempt: int = 1) -> TaskResult:
    return TaskResult(
        task_id=task_id,
        attempt=attempt,
        worker=worker,
        worker_id=worker,
        success=True,
        status=ResultStatus.SUCCEEDED,
        output="ok",
    )


def last_error(m: ManagerHarness, ident: str) -> Error:
    return m.router.to(ident, Error)[-1]


# --------------------------------------------------------------------------- roles


def test_each_key_acts_only_in_its_role(mgr: ManagerHarness, ring: Ring) -> None:
    mgr.deliver("w", Submit(req=7, tasks=[TaskSpec(id="t")]), ring.key("w1"))
    assert (last_error(mgr, "w").code, last_error(mgr, "w").req) == ("forbidden", 7)
    mgr.deliver("c", register("c"), ring.key("alice"))
    assert last_error(mgr, "c").code == "forbidden"
    mgr.deliver("c", Submit(req=1, tasks=[TaskSpec(id="t")]), ring.key("alice"))
    assert mgr.router.to("c", SubmitReply)[-1].accepted == ["t"]
    mgr.deliver("o", StatusRequest(req=1), ring.key("olga"))
    counts = mgr.router.to("o", StatusReply)[-1].counts
    assert counts["forbidden"] == 2
    assert mgr.admin.registry.get("c") is None


def test_a_key_no_longer_listed_gets_nothing_in_and_nothing_out(
    mgr: ManagerHarness, ring: Ring
) -> None:
    mgr.deliver("x", Submit(req=1, tasks=[TaskSpec(id="t")]), "not-a-listed-key")
    mgr.deliver("x", StatusRequest(req=2), "not-a-listed-key")
    assert mgr.router.to("x", Error) == []
    assert [i for i, _ in mgr.router.sent] == []
    assert mgr.admin.counters["auth_revoked"] == 2
    assert len(mgr.service.book) == 0


def test_removing_a_key_file_drops_its_worker_and_its_watches(
    mgr: ManagerHarness, ring: Ring
) -> None:
    mgr.join("w", key=ring.key("w1"))
    mgr.deliver(
        "c",
        Submit(req=1, tasks=[TaskSpec(id="a"), TaskSpec(id="b")], watch=True),
        ring.key("alice"),
    )
    assert mgr.service.watchers.watching(b"c") == 2
    (ring.root / "workers" / "w1.key").unlink()
    (ring.root / "clients" / "alice.key").unlink()
    mgr.admin.reload_keys()
    mgr.flush()
    assert mgr.admin.registry.get("w") is None
    assert mgr.service.watchers.watching(b"c") == 0
    assert mgr.service.book.queued == 2  # the task it held is queued again
    assert mgr.admin.counters["keys_revoked"] == 2
    assert mgr.admin.pub_stale  # its SUB connection must go too: the PUB is re-opened


def test_removing_a_client_key_leaves_the_pub_alone(mgr: ManagerHarness, ring: Ring) -> None:
    (ring.root / "clients" / "bob.key").unlink()
    mgr.admin.reload_keys()
    assert mgr.admin.counters["keys_revoked"] == 1
    assert not mgr.admin.pub_stale


def test_a_malformed_key_file_does_not_keep_a_removed_key_in_force(
    mgr: ManagerHarness, ring: Ring
) -> None:
    """Fail closed: a junk ``*.key`` is skipped (logged once), the removal still revokes."""
    w1 = ring.key("w1")
    mgr.join("w1", key=w1)
    mgr.join("w2", key=ring.key("w2"))
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{message}")
    try:
        (ring.root / "workers" / "new.key").write_text("junk, not a certificate\n" * 2000)
        (ring.root / "workers" / "w1.key").unlink()
        mgr.tick(5.0, alive=("w1", "w2"))  # the directory check runs every 2 s
        mgr.admin.reload_keys()  # SIGHUP: the same junk file, nothing new to say
        mgr.tick(5.0, alive=("w2",))
    finally:
        logger.remove(sink)
    assert mgr.admin.registry.get("w1") is None
    assert mgr.admin.registry.get("w2") is not None
    mgr.deliver("w1", Heartbeat(epoch=mgr.admin.epoch, time=0), w1)
    assert mgr.router.to("w1", Error) == []  # no longer listed: dropped without reply
    assert mgr.admin.counters["keys_revoked"] == 1
    skipped = [line for line in lines if "new.key" in line]
    assert len(skipped) == 1, skipped
    assert "skipped" in skipped[0]
    assert "junk" not in skipped[0]  # names the file, never echoes its content
    assert not any("previous ones stay in force" in line for line in lines)


def test_a_rewritten_bad_key_file_is_logged_again_and_a_fixed_one_admitted(
    mgr: ManagerHarness, ring: Ring
) -> None:
    bad = ring.root / "clients" / "new.key"
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{message}")
    try:
        bad.write_text("junk")
        mgr.admin.reload_keys()
        mgr.admin.reload_keys()
        bad.write_text("other junk")
        mgr.admin.reload_keys()
        bad.write_bytes((ring.root / "operators" / "olga.key").read_bytes())
        mgr.admin.reload_keys()
    finally:
        logger.remove(sink)
    assert len([line for line in lines if "new.key" in line]) == 2
    assert mgr.admin.keyring is not None
    assert mgr.admin.keyring.has_role(ring.key("olga"), "client")


def test_a_vanished_key_directory_lists_nobody_and_is_logged_once(
    mgr: ManagerHarness, ring: Ring
) -> None:
    mgr.join("w1", key=ring.key("w1"))
    workers = ring.root / "workers"
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{message}")
    try:
        workers.rename(ring.root / "workers.old")
        mgr.tick(5.0)
        mgr.admin.reload_keys()
        mgr.tick(5.0)
    finally:
        logger.remove(sink)
    assert mgr.admin.registry.get("w1") is None
    assert mgr.admin.keyring is not None
    assert mgr.admin.keyring.count("worker") == 0
    assert mgr.admin.keyring.count("client") == 2  # the other directories still count
    assert len([line for line in lines if "no worker keys are listed" in line]) == 1
    (ring.root / "workers.old").rename(workers)
    mgr.tick(2.5)
    assert mgr.admin.keyring.has_role(ring.key("w1"), "worker")


# --------------------------------------------------------------------------- owners


def test_a_client_sees_only_its_own_tasks_and_an_operator_sees_all(
    mgr: ManagerHarness, ring: Ring
) -> None:
    alice, bob, olga = ring.key("alice"), ring.key("bob"), ring.key("olga")
    mgr.deliver("a", Submit(req=1, tasks=[TaskSpec(id="a1", payload="secret")]), alice)
    mgr.join("w", key=ring.key("w1"))
    (job,) = mgr.router.to("w", Assign)[-1].jobs
    mgr.deliver("w", Results(results=[result(job.task.id, "w")]), ring.key("w1"))
    mgr.deliver("a", Submit(req=2, tasks=[TaskSpec(id="a2", kind="none")]), alice)
    mgr.deliver("b", Submit(req=1, tasks=[TaskSpec(id="b1", kind="none")]), bob)

    mgr.deliver("b", TasksRequest(req=2, ids=["a1", "a2", "b1"]), bob)
    states = mgr.router.to("b", TasksReply)[-1].tasks
    assert [(s.id, s.state) for s in states] == [
        ("a1", "unknown"),
        ("a2", "unknown"),
        ("b1", "queued"),
    ]
    mgr.deliver("b", TasksRequest(req=3), bob)
    page = mgr.router.to("b", TasksReply)[-1]
    assert ([s.id for s in page.tasks], page.total) == (["b1"], 1)
    mgr.deliver("a", TasksRequest(req=3), alice)
    page = mgr.router.to("a", TasksReply)[-1]
    assert ([s.id for s in page.tasks], page.total) == (["a1", "a2"], 2)
    mgr.deliver("o", TasksRequest(req=1), olga)
    page = mgr.router.to("o", TasksReply)[-1]
    assert ([s.id for s in page.tasks], page.total) == (["a1", "a2", "b1"], 3)

    mgr.deliver("b", Watch(req=4, ids=["a1", "a2"]), bob)
    reply = mgr.router.to("b", WatchReply)[-1]
    assert (reply.done, reply.unknown, reply.watching) == ([], ["a1", "a2"], 0)

    for task_id in ("a1", "a2"):  # neither a finished nor a live task of another client
        mgr.deliver("b", Submit(req=5, tasks=[TaskSpec(id="b2"), TaskSpec(id=task_id)]), bob)
        assert (last_error(mgr, "b").code, last_error(mgr, "b").req) == ("id_taken", 5)
    assert mgr.service.book.get("b2") is None  # nothing of a refused submit is accepted


def test_owners_survive_a_restart_and_old_journals_are_one_tenant(
    tmp_path: Path, ring: Ring
) -> None:
    db = tmp_path / "journal.db"
    first = ManagerHarness(db, **ring.settings())
    first.deliver("a", Submit(req=1, tasks=[TaskSpec(id="a1", kind="none")]), ring.key("alice"))
    first.close()
    spec = codec.pack(codec.plain(TaskSpec(id="old", kind="none")))
    with sqlite3.connect(db) as con:  # a task written before owners existed
        con.execute(
            "INSERT INTO tasks(seq, id, spec, state) VALUES (99, 'old', ?, 'queued')", (spec,)
        )
    second = ManagerHarness(db, **ring.settings())
    try:
        second.deliver("b", TasksRequest(req=1, ids=["a1", "old"]), ring.key("bob"))
        states = second.router.to("b", TasksReply)[-1].tasks
        assert [s.state for s in states] == ["unknown", "unknown"]
        second.deliver("a", TasksRequest(req=1, ids=["a1"]), ring.key("alice"))
        assert second.router.to("a", TasksReply)[-1].tasks[0].state == "queued"
        second.deliver("o", TasksRequest(req=1), ring.key("olga"))
        assert [s.id for s in second.router.to("o", TasksReply)[-1].tasks] == ["a1", "old"]
    finally:
        second.close()


def test_a_journal_without_owner_columns_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as con:
        con.execute(
            "CREATE TABLE tasks (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
            "spec BLOB NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, "
            "worker TEXT NOT NULL DEFAULT '', result BLOB, status TEXT)"
        )
    harness = ManagerHarness(db)
    try:
        harness.deliver("c", Submit(req=1, tasks=[TaskSpec(id="t")]))
        harness.deliver("c", TasksRequest(req=2, ids=["t"]))
        assert harness.router.to("c", TasksReply)[-1].tasks[0].state == "queued"
    finally:
        harness.close()
    with sqlite3.connect(db) as con:
        columns = {row[1] for row in con.execute("PRAGMA table_info(tasks)")}
    assert {"owner", "worker_key"} <= columns


# --------------------------------------------------------------------------- identities


def test_an_agent_id_is_bound_to_the_key_that_registered_it(
    mgr: ManagerHarness, ring: Ring
) -> None:
    mgr.join("route-1", agent_id="w", key=ring.key("w1"))
    mgr.deliver("route-2", register("w"), ring.key("w2"))
    error = last_error(mgr, "route-2")
    assert (error.code, "another key" in error.message) == ("id_taken", True)
    # Its own connection, another key (the identity reused after a disconnect): a stranger.
    mgr.deliver("route-1", Heartbeat(epoch=mgr.admin.epoch, time=1), ring.key("w2"))
    assert last_error(mgr, "route-1").code == "unknown_peer"
    mgr.deliver("route-1", Results(results=[result("x", "w")]), ring.key("w2"))
    assert mgr.admin.counters["results_stale"] == 0
    assert mgr.admin.registry.get("w") is not None


def test_a_silent_workers_id_stays_bound_to_its_key_until_it_is_dropped(
    mgr: ManagerHarness, ring: Ring
) -> None:
    """SECURITY.md: without CURVE a silent worker's id is free to any peer; with CURVE
    only to its own key."""
    mgr.join("route-1", agent_id="w", key=ring.key("w1"))
    mgr.tick(5.0)  # silent for more than a liveness window (3 s)
    assert str(mgr.admin.registry.get("w").state) == "unreachable"  # type: ignore[union-attr]
    mgr.deliver("route-2", register("w"), ring.key("w2"))
    assert last_error(mgr, "route-2").code == "id_taken"
    mgr.deliver("route-3", register("w"), ring.key("w1"))  # its own key, a new connection
    assert mgr.admin.registry.get("w").route == b"route-3"  # type: ignore[union-attr]


def test_a_live_id_from_another_connection_is_refused_until_the_holder_is_gone(
    plain: ManagerHarness,
) -> None:
    mgr = plain  # no CURVE: the same rule
    mgr.join("route-1", agent_id="w")
    mgr.deliver("route-2", register("w"))
    assert last_error(mgr, "route-2").code == "id_taken"
    assert mgr.admin.registry.get("w").route == b"route-1"  # type: ignore[union-attr]
    # The holder's connection is gone: the check's heartbeat fails, the id is free.
    mgr.router.unreachable.add("route-1")
    mgr.deliver("route-2", register("w"))
    mgr.deliver("route-2", register("w"))
    assert mgr.admin.registry.get("w").route == b"route-2"  # type: ignore[union-attr]
    # Silent for a liveness window (not yet dropped): any other connection may take it.
    mgr.tick(5.0)
    mgr.deliver("route-3", register("w"))
    assert mgr.admin.registry.get("w").route == b"route-3"  # type: ignore[union-attr]


def test_after_a_restart_a_running_task_goes_back_only_to_its_workers_key(
    tmp_path: Path, ring: Ring
) -> None:
    db = tmp_path / "journal.db"
    first = ManagerHarness(db, **ring.settings())
    first.deliver("c", Submit(req=1, tasks=[TaskSpec(id="t")]), ring.key("alice"))
    first.join("r1", agent_id="w", key=ring.key("w1"))
    assert first.router.to("r1", Assign)
    first.close()

    second = ManagerHarness(db, **ring.settings())
    try:
        holding = [ResultKey(task_id="t", attempt=1)]
        second.deliver("r2", register("w", holding=holding), ring.key("w2"))
        assert second.admin.registry.get("w").running == {}  # type: ignore[union-attr]
        second.deliver("r2", Results(results=[result("t", "w")]), ring.key("w2"))
        assert second.admin.counters["results_stale"] == 1
        second.deliver("r2", register("w", holding=holding), ring.key("w2"))  # still no
        second.deliver("r3", register("w", holding=holding), ring.key("w1"))
        assert last_error(second, "r3").code == "id_taken"  # held by the other key, live
        second.deliver("r2", Bye(reason="done"), ring.key("w2"))
        second.deliver("r3", register("w", holding=holding), ring.key("w1"))
        assert second.admin.registry.get("w").running == {"t": 1}  # type: ignore[union-attr]
    finally:
        second.close()


# --------------------------------------------------------------------------- slow peers


def test_a_client_that_does_not_read_loses_its_replies_and_nobody_waits(
    plain: ManagerHarness,
) -> None:
    mgr = plain
    mgr.router.full.add("slow")
    mgr.handle("slow", StatusRequest(req=1))
    mgr.handle("fast", StatusRequest(req=2))
    mgr.flush()
    assert mgr.router.to("slow", StatusReply) == []
    assert [r.req for r in mgr.router.to("fast", StatusReply)] == [2]
    assert mgr.admin.counters["replies_dropped"] == 1


def test_messages_for_a_worker_that_is_not_reading_wait_for_it_in_order(
    plain: ManagerHarness,
) -> None:
    mgr = plain
    mgr.join("w")
    mgr.router.full.add("w")
    mgr.deliver("c", Submit(req=1, tasks=[TaskSpec(id="a")]))
    mgr.tick(1.5, alive=("w",))  # a heartbeat is due meanwhile: it waits behind the assign
    assert mgr.router.to("w", Assign) == []
    assert mgr.admin.counters["sends_deferred"] == 1
    mgr.router.full.discard("w")
    mgr.tick(0.1)
    sent = [type(m).__name__ for i, m in mgr.router.sent if i == "w"]
    assert "Assign" in sent
    assert sent.index("Assign") < len(sent) - 1  # the heartbeats queued behind it follow
    assert mgr.admin.registry.get("w") is not None


def test_a_worker_that_takes_nothing_for_a_liveness_window_is_unreachable(
    plain: ManagerHarness,
) -> None:
    mgr = plain
    mgr.join("w1")
    mgr.router.full.add("w1")
    mgr.deliver("c", Submit(req=1, tasks=[TaskSpec(id="a")]))
    mgr.tick(3.5, alive=("w1",))  # it still sends (heartbeats) but reads nothing
    rec = mgr.admin.registry.get("w1")
    assert rec is not None
    assert rec.missed  # a message to it was given up: it must register again when heard
    mgr.join("w2", capacity=2)
    mgr.deliver("c", Submit(req=2, tasks=[TaskSpec(id="b")]))
    assert [j.task.id for j in mgr.router.to("w2", Assign)[-1].jobs] == ["b"]
    mgr.tick(4.0, alive=("w2",))  # w1 falls silent: no grace for a record that missed one
    assert mgr.admin.registry.get("w1") is None
    assert "a" in [j.task.id for a in mgr.router.to("w2", Assign) for j in a.jobs]


def test_a_broadcast_sequence_number_out_of_range_is_refused(plain: ManagerHarness) -> None:
    mgr = plain
    mgr.join("w")
    for seq in (2**64 - 1, 1, 2**63):
        mgr.deliver("w", Broadcast(sender="w", seq=seq, time=1, data=b"x"))
    assert [e.code for e in mgr.router.to("w", Error)] == ["bad_message", "bad_message"]
    assert mgr.admin.gaps.missed == 0
    mgr.deliver("o", StatusRequest(req=1))  # the counts still encode
    assert mgr.router.to("o", StatusReply)[-1].counts["gaps"] == 0


@pytest.mark.parametrize(
    ("bind", "curve", "warned"),
    [
        ("0.0.0.0", False, True),
        ("10.1.2.3", False, True),
        ("127.0.0.1", False, False),
        ("localhost", False, False),
        ("0.0.0.0", True, False),
    ],
)
def test_listening_beyond_loopback_without_curve_is_loud(
    tmp_path: Path, ring: Ring, bind: str, curve: bool, warned: bool
) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        settings = ring.settings() if curve else {}
        harness = ManagerHarness(tmp_path / "j.db", bind=bind, **settings)  # opens: no socket
        harness.close()
    finally:
        logger.remove(sink)
    assert any("without CURVE" in line for line in lines) == warned, lines
