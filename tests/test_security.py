"""CURVE over real sockets: only listed keys get in, each key only in its role.

A manager started with ``--secret-key`` and allow-list directories, real
worker processes and clients with keys from ``taskmesh keys generate``, and
hand-made pyzmq sockets for what a stranger or a dishonest peer would do.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from manager.auth import RELOAD_EVERY
from protocol import PROTOCOL_VERSION, TaskSpec, TasksReply, TasksRequest
from runtime.keys import CurveClient, KeyPair, generate, load_public, load_secret
from taskmesh.client import Client
from taskmesh.errors import ManagerError, ManagerUnavailable
from tests.conftest import Cluster
from tests.helpers.ops import connected, status, submit, wait_done, wait_until


class Keys:
    """A key pair per name; ``workers/``, ``clients/``, ``operators/`` are the allow-lists,
    ``strangers/`` are keys nobody listed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        generate("manager", root)
        self.manager_public = load_public(root / "manager.key")
        for folder, names in (
            ("workers", ["alice", "bob"]),
            ("clients", ["carol", "dave"]),
            ("operators", ["olga"]),
            ("strangers", ["mallory"]),
        ):
            for name in names:
                generate(name, root / folder)

    def dir(self, folder: str) -> Path:
        return self.root / folder

    def secret(self, name: str) -> Path:
        return next(self.root.glob(f"*/{name}.key_secret"))

    def pair(self, name: str) -> KeyPair:
        return load_secret(self.secret(name))

    def curve(self, name: str) -> CurveClient:
        return CurveClient(keys=self.pair(name), server=self.manager_public)

    def args(self, name: str) -> list[str]:
        """A worker's command-line options for the keys of ``name``."""
        manager = str(self.root / "manager.key")
        return ["--secret-key", str(self.secret(name)), "--manager-key", manager]

    def manager_args(self) -> list[str]:
        return [
            "--secret-key",
            str(self.root / "manager.key_secret"),
            "--worker-keys",
            str(self.dir("workers")),
            "--client-keys",
            str(self.dir("clients")),
            "--operator-keys",
            str(self.dir("operators")),
        ]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys")


def start(cluster: Cluster, keys: Keys, *args: str) -> None:
    """A CURVE manager; the cluster's own client (status, waits) is the operator."""
    cluster.manager(*keys.manager_args(), *args)
    cluster.curve = keys.curve("olga")


def pub_endpoint(cluster: Cluster) -> str:
    info = json.loads((cluster.logs / f"manager-{cluster._count}.ready.json").read_text())
    return str(info["pub_endpoint"])


def client(cluster: Cluster, curve: CurveClient | None, timeout: float = 5.0) -> Client:
    return Client("127.0.0.1", cluster.port, timeout=timeout, curve=curve)


def full_log(cluster: Cluster, index: int) -> str:
    proc = cluster.procs[index]
    proc.log()
    return proc.log_path.read_text(errors="replace")


class RawSockets:
    """pyzmq sockets made by hand, with or without CURVE; all closed on exit."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sockets: list[zmq.Socket[bytes]] = []

    def __enter__(self) -> RawSockets:
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self.sockets:
            sock.close(linger=0)
        self.ctx.term()

    def socket(self, kind: int, name: str | None, endpoint: str) -> zmq.Socket[bytes]:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if name is not None:
            self.keys.curve(name).apply(sock)
        if kind == zmq.SUB:
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(endpoint)
        self.sockets.append(sock)
        return sock


def request(
    sock: zmq.Socket[bytes], body: dict[str, Any], want: str, timeout: float = 5.0
) -> dict[str, Any]:
    """Send ``body``; the first reply of type ``want`` or ``error`` (heartbeats skipped)."""
    sock.send(msgpack.packb(body, use_bin_type=True))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000)):
            reply: dict[str, Any] = msgpack.unpackb(sock.recv(), raw=False)
            if reply["type"] in (want, "error"):
                return reply
    raise AssertionError(f"no {want!r} within {timeout}s")


def register(agent_id: str, capacity: int = 0) -> dict[str, Any]:
    return {
        "type": "register",
        "version": PROTOCOL_VERSION,
        "agent_id": agent_id,
        "name": agent_id,
        "workspace_id": "taskmesh",
        "skill": 1,
        "capacity": capacity,
    }


def received(sock: zmq.Socket[bytes], seconds: float) -> list[dict[str, Any]]:
    """Everything ``sock`` receives within ``seconds``."""
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000)):
            out.append(msgpack.unpackb(sock.recv(), raw=False))
    return out


async def answers(peer: Client) -> bool:
    """Does the manager answer ``peer`` (a handshake refused, or silence: no)?"""
    try:
        await peer.status()
    except (ManagerUnavailable, ManagerError):
        return False
    return True


@pytest.fixture
def raw(keys: Keys) -> Iterator[RawSockets]:
    with RawSockets(keys) as sockets:
        yield sockets


# --------------------------------------------------------------------------- tests


def test_an_authorised_worker_and_client_complete_tasks(cluster: Cluster, keys: Keys) -> None:
    start(cluster, keys)
    cluster.worker("alice", 5, *keys.args("alice"))
    wait_until(connected(cluster, 1), what="alice")

    async def go() -> list[Any]:
        async with client(cluster, keys.curve("carol")) as carol:
            tasks = [TaskSpec(id=f"t{i}", kind="echo", payload={"n": i}) for i in range(20)]
            await carol.submit(tasks)
            return await carol.wait([t.id for t in tasks], timeout=30)

    states = cluster.run(go())
    assert [s.result.output for s in states if s.result] == [{"n": i} for i in range(20)]
    assert {s.result.worker for s in states if s.result} == {"alice"}
    counts = status(cluster).counts
    assert counts.get("auth_refused", 0) == 0
    assert counts.get("handshakes_failed", 0) == 0


def test_a_worker_with_an_unlisted_key_or_none_gets_no_assignment_and_no_broadcast(
    cluster: Cluster, keys: Keys, raw: RawSockets
) -> None:
    start(cluster, keys)
    # Skill 1: best-fit would prefer them to alice for every task.
    mallory = cluster.worker("mallory", 1, *keys.args("mallory"))
    nokey = cluster.worker("nokey", 1)
    endpoint = pub_endpoint(cluster)
    listened = {who: raw.socket(zmq.SUB, who, endpoint) for who in ("alice", "mallory")}
    bare = raw.socket(zmq.SUB, None, endpoint)
    time.sleep(0.5)  # every SUB has had time to connect (or be refused)
    cluster.worker("alice", 9, *keys.args("alice"))
    wait_until(connected(cluster, 1), what="alice")
    ids = submit(cluster, [TaskSpec(id=f"t{i}", kind="echo", payload=i) for i in range(5)])
    states = wait_done(cluster, ids)

    assert {s.result.worker for s in states if s.result} == {"alice"}
    published = {who: received(sock, 1.0) for who, sock in listened.items()}
    assert any(m["type"] == "joined" for m in published["alice"])  # a listed key hears it
    assert published["mallory"] == []
    assert received(bare, 0.2) == []
    after = status(cluster)
    assert [w.name for w in after.workers] == ["alice"]
    assert after.counts["auth_refused"] >= 2  # mallory's DEALER and SUB
    assert after.counts["handshakes_failed"] >= 2  # nokey's DEALER, the bare SUB
    for proc in (mallory, nokey):
        assert proc.alive()
        assert "connected to" not in proc.log()
    assert "not listed" in full_log(cluster, 0)


def test_a_client_with_an_unlisted_key_or_none_cannot_submit_or_read(
    cluster: Cluster, keys: Keys
) -> None:
    start(cluster, keys)

    async def go() -> None:
        async with client(cluster, keys.curve("carol")) as carol:
            await carol.submit([TaskSpec(id="private", kind="nobody-runs-this")])
        for curve in (keys.curve("mallory"), None):
            async with client(cluster, curve, timeout=1.0) as stranger:
                for attempt in (
                    stranger.submit([TaskSpec(id="planted")]),
                    stranger.tasks(["private"]),
                    stranger.status(),
                ):
                    with pytest.raises(ManagerError) as refused:
                        await attempt
                    assert refused.value.code == "handshake"

    cluster.run(go())

    async def everything() -> list[str]:
        async with cluster.client() as olga:  # an operator sees every task
            return [s.id for s in await olga.tasks()]

    assert cluster.run(everything()) == ["private"]


def test_roles_a_worker_key_cannot_submit_and_a_client_key_cannot_register(
    cluster: Cluster, keys: Keys
) -> None:
    start(cluster, keys)

    async def go() -> None:
        async with client(cluster, keys.curve("alice")) as as_worker:
            with pytest.raises(ManagerError) as refused:
                await as_worker.submit([TaskSpec(id="t")])
            assert refused.value.code == "forbidden"
            with pytest.raises(ManagerError):
                await as_worker.tasks(["t"])

    cluster.run(go())
    impostor = cluster.worker("carol", 5, *keys.args("carol"))
    assert impostor.popen.wait(timeout=15) != 0
    assert "only worker keys register" in impostor.log()
    assert status(cluster).counts["forbidden"] >= 3


def test_an_authorised_worker_cannot_take_over_another_id_or_report_its_tasks(
    cluster: Cluster, keys: Keys, raw: RawSockets
) -> None:
    start(cluster, keys)
    cluster.worker("alice", 5, *keys.args("alice"), "--id", "alice-1")
    wait_until(connected(cluster, 1), what="alice")
    submit(cluster, [TaskSpec(id="theirs", kind="sleep", payload=1.5)])
    wait_until(lambda: status(cluster).counts["running"] == 1, what="the task running")

    router = f"tcp://127.0.0.1:{cluster.port}"
    bob = raw.socket(zmq.DEALER, "bob", router)
    reply = request(bob, register("alice-1", capacity=1), "welcome")
    assert reply["type"] == "error"
    assert reply["code"] == "id_taken"
    assert "another key" in reply["message"]

    own = request(bob, register("bob-1"), "welcome")
    assert own["type"] == "welcome"
    forged = {
        "task_id": "theirs",
        "attempt": 1,
        "worker": "alice",
        "worker_id": "alice-1",
        "success": True,
        "status": "succeeded",
        "output": "forged",
    }
    ack = request(bob, {"type": "results", "results": [forged]}, "result_ack")
    assert ack["type"] == "result_ack"  # acknowledged, so it stops re-sending, not recorded

    (state,) = wait_done(cluster, ["theirs"])
    assert state.result is not None
    assert state.result.output == 1.5
    assert state.result.worker_id == "alice-1"
    after = status(cluster)
    assert after.counts["results_stale"] == 1
    assert [w.id for w in after.workers] == ["alice-1"]
    assert "alice disconnected" not in full_log(cluster, 0)


def test_a_client_cannot_read_watch_or_reuse_another_clients_task(
    cluster: Cluster, keys: Keys
) -> None:
    start(cluster, keys)
    cluster.worker("alice", 5, *keys.args("alice"))
    wait_until(connected(cluster, 1), what="alice")
    secret = {"secret": "carol's"}

    async def go() -> None:
        async with client(cluster, keys.curve("carol")) as carol:
            await carol.submit(
                [
                    TaskSpec(id="done", kind="echo", payload=secret),
                    TaskSpec(id="waiting", kind="nobody-runs-this", payload=secret),
                ]
            )
            (done,) = await carol.wait(["done"], timeout=15)
            assert done.result is not None
            assert done.result.output == secret
        async with client(cluster, keys.curve("dave")) as dave:
            states = await dave.tasks(["done", "waiting"])
            assert [(s.id, s.state) for s in states] == [
                ("done", "unknown"),
                ("waiting", "unknown"),
            ]
            assert all(s.result is None and s.description == "" for s in states)
            assert await dave.tasks() == []  # the listing holds dave's tasks only: none
            for task_id in ("done", "waiting"):
                with pytest.raises(ManagerError) as refused:
                    await dave.wait([task_id], timeout=5)
                assert refused.value.code == "unknown"
                with pytest.raises(ManagerError) as taken:
                    await dave.submit([TaskSpec(id=task_id, kind="echo", payload="mine now")])
                assert taken.value.code == "id_taken"
            await dave.submit([TaskSpec(id="dave-1", kind="echo")])
            assert [s.id for s in await dave.tasks()] == ["dave-1"]
            page = await dave.request(TasksRequest(req=99), TasksReply)
            assert page.total == 1
        async with cluster.client() as olga:
            assert sorted(s.id for s in await olga.tasks()) == ["dave-1", "done", "waiting"]

    cluster.run(go())


def test_a_removed_key_is_cut_off_within_seconds(cluster: Cluster, keys: Keys) -> None:
    start(cluster, keys)
    worker = cluster.worker("alice", 5, *keys.args("alice"))
    wait_until(connected(cluster, 1), what="alice")

    async def answered(name: str) -> bool:
        async with client(cluster, keys.curve(name), timeout=0.5) as peer:
            return await answers(peer)

    async def connected_before_and_after() -> tuple[bool, bool]:
        """One connection of dave's, across the removal of its key."""
        async with client(cluster, keys.curve("dave"), timeout=0.5) as dave:
            before = await answers(dave)
            (keys.dir("clients") / "dave.key").unlink()
            (keys.dir("workers") / "alice.key").unlink()
            # The directories are checked every 2 s (RELOAD_EVERY): well within this bound.
            for _ in range(50):  # 10 s at least
                if not await answers(dave):
                    return before, False
                await asyncio.sleep(0.2)
            return before, True

    assert cluster.run(connected_before_and_after()) == (True, False)
    assert not cluster.run(answered("dave"))  # nor on a new connection
    wait_until(lambda: status(cluster).workers == [], timeout=10, what="alice dropped")
    assert cluster.run(answered("carol"))
    assert status(cluster).counts["auth_revoked"] >= 1
    assert "key revoked" in full_log(cluster, 0)
    assert worker.alive()  # refused, not crashed: it keeps trying


def test_sighup_reloads_the_key_directories(cluster: Cluster, keys: Keys) -> None:
    start(cluster, keys)
    dave = keys.dir("clients") / "dave.key"
    mallory = keys.dir("strangers") / "mallory.key"

    async def answered() -> bool:
        async with client(cluster, keys.curve("mallory"), timeout=0.5) as peer:
            return await answers(peer)

    assert not cluster.run(answered())
    # Rewritten in place: the directory itself does not change, only SIGHUP tells.
    with dave.open("r+b") as file:
        file.write(mallory.read_bytes())
        file.truncate()
    cluster.procs[0].signal(signal.SIGHUP)
    wait_until(lambda: cluster.run(answered()), timeout=5, what="mallory admitted")
    assert cluster.procs[0].alive()


def test_a_removed_worker_keys_open_sub_connection_hears_no_more_broadcasts(
    cluster: Cluster, keys: Keys, raw: RawSockets
) -> None:
    start(cluster, keys)
    endpoint = pub_endpoint(cluster)
    subs = {who: raw.socket(zmq.SUB, who, endpoint) for who in ("alice", "bob")}
    cluster.worker("first", 5, *keys.args("bob"))
    wait_until(connected(cluster, 1), what="the first worker")
    heard = {who: received(sock, 0.5) for who, sock in subs.items()}
    assert all(any(m["type"] == "joined" for m in got) for got in heard.values()), heard

    (keys.dir("workers") / "alice.key").unlink()
    wait_until(lambda: "PUB re-opened" in full_log(cluster, 0), timeout=10, what="the renewal")
    for sock in subs.values():  # what the old PUB sent (heartbeats) before it closed
        received(sock, 0.3)
    cluster.worker("second", 5, *keys.args("bob"))
    # Read both all along: a ZeroMQ socket attaches its new connection (and sends its
    # subscription) only while its own thread uses it.
    heard = {"alice": [], "bob": []}
    for _ in range(100):
        for who, sock in subs.items():
            heard[who] += received(sock, 0.05)
        if any(m["type"] == "joined" and m["agent"]["name"] == "second" for m in heard["bob"]):
            break
    assert any(m["type"] == "joined" for m in heard["bob"]), heard["bob"]
    assert heard["alice"] == []
    assert [w.state for w in status(cluster).workers] == ["connected", "connected"]


def test_a_malformed_key_file_does_not_keep_a_removed_worker_key_in_force(
    cluster: Cluster, keys: Keys
) -> None:
    start(cluster, keys)
    alice = cluster.worker("alice", 5, *keys.args("alice"))
    cluster.worker("bob", 5, *keys.args("bob"))
    wait_until(connected(cluster, 2), what="alice and bob")

    # One reload sees both: junk first, so that no check can see only the removal.
    (keys.dir("workers") / "new.key").write_text("not a certificate\n")
    (keys.dir("workers") / "alice.key").unlink()
    wait_until(
        lambda: [w.name for w in status(cluster).workers] == ["bob"],
        timeout=10,
        what="alice dropped",
    )
    ids = submit(cluster, [TaskSpec(id=f"t{i}", kind="echo", payload=i) for i in range(4)])
    states = wait_done(cluster, ids)
    assert {s.result.worker for s in states if s.result} == {"bob"}
    time.sleep(RELOAD_EVERY * 2.5)  # alice keeps trying; the directory is checked again
    after = status(cluster)
    assert [(w.name, w.state) for w in after.workers] == [("bob", "connected")]
    assert after.counts["auth_refused"] >= 1  # alice's new connections
    assert alice.alive()
    log = full_log(cluster, 0)
    assert log.count("key file skipped") == 1, log  # once, not every check
    assert "previous ones stay in force" not in log


def test_the_http_status_page_lists_no_task_ids_with_curve(cluster: Cluster, keys: Keys) -> None:
    start(cluster, keys, "--metrics-port", "0")
    cluster.worker("alice", 5, *keys.args("alice"))
    wait_until(connected(cluster, 1), what="alice")

    async def go() -> None:
        async with client(cluster, keys.curve("carol")) as carol:
            await carol.submit([TaskSpec(id="carols-secret-id", kind="sleep", payload=30)])

    cluster.run(go())
    wait_until(lambda: status(cluster).counts["running"] == 1, what="the task running")
    assert status(cluster).workers[0].tasks == ["carols-secret-id"]  # the operator sees it
    ready = json.loads((cluster.logs / f"manager-{cluster._count}.ready.json").read_text())
    url = ready["metrics"]
    with urllib.request.urlopen(url + "/status.json", timeout=5) as answer:
        body = answer.read()
    (worker,) = json.loads(body)["workers"]
    assert (worker["name"], worker["running"], worker["tasks"]) == ("alice", 1, [])
    for path in ("/metrics", "/", "/history.json"):
        with urllib.request.urlopen(url + path, timeout=5) as answer:
            assert b"carols-secret-id" not in answer.read(), path
    assert b"carols-secret-id" not in body


def test_a_worker_refused_at_first_joins_once_its_key_is_listed(
    cluster: Cluster, keys: Keys
) -> None:
    """The operator's order of steps need not matter: start the worker, then list its key."""
    start(cluster, keys)
    listed = keys.dir("workers") / "mallory.key"
    worker = cluster.worker("mallory", 5, *keys.args("mallory"))
    wait_until(lambda: "refused this key" in worker.log(), timeout=10, what="the refusal")
    listed.write_bytes((keys.dir("strangers") / "mallory.key").read_bytes())
    # Listed within RELOAD_EVERY; the worker's next attempt must then get in.
    wait_until(connected(cluster, 1), timeout=RELOAD_EVERY + 10, what="mallory connected")
    ids = submit(cluster, [TaskSpec(id="after-listing", kind="echo", payload=1)])
    assert [s.result.worker for s in wait_done(cluster, ids) if s.result] == ["mallory"]
