"""Bad frames for a manager's ROUTER: seeded, pure (no sockets), shared by the fuzz tests.

``JunkFactory(rng, ...).frames(n)`` yields ``Junk`` items.  Each says which
body frames to send, from which kind of sender, and what the manager must do
with it (``expect``), so that a test can check the manager's counters:

- ``bad``: refused by the receive loop, counted in ``bad_messages`` (frame
  count, decode failure, a message type the manager never receives);
- ``unknown_peer``: a well-formed peer message from a sender that never
  registered, counted in ``unknown_peer``;
- ``result``: a result for a task not assigned to the sender, from a sender
  that registered (capacity 0, never connected), counted in ``results_stale``,
  ``results_duplicate`` or ``results_unknown`` (``unknown_peer`` if the
  registration expired meanwhile);
- ``refused``: answered with an ``Error`` but counted nowhere today
  (registrations with a bad version or workspace, oversized tasks);
- ``accepted``: valid but odd requests the manager answers normally;
- ``dropped``: over ZeroMQ's ``MAXMSGSIZE``: the connection is dropped, the
  manager never sees the frame;
- ``any``: mutated messages: whatever the manager makes of them.

``KNOWN_BUGS`` names the kinds this generator can also make that break a
manager today; they are produced only when asked for by name.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from protocol import MAX_MESSAGE_BYTES, PROTOCOL_VERSION

#: Sender kinds: a never-registered socket, a registered junk peer, a socket used once.
ANON, REGISTERED, THROWAWAY = "anon", "registered", "throwaway"

#: Message types only the manager sends: a manager that receives one refuses it.
MANAGER_TO_PEER = (
    "welcome",
    "probe",
    "joined",
    "left",
    "roster",
    "assign",
    "result_ack",
    "submit_reply",
    "status_reply",
    "tasks_reply",
    "error",
)

#: A task kind no worker has: junk tasks that are accepted stay queued and never run.
NO_KIND = "fuzz-no-such-kind"

#: Kinds of junk that break today's manager, with what they trigger.
KNOWN_BUGS: dict[str, str] = {}

#: Relative frequency of each kind in a mixed stream (default 10): big frames are rarer.
WEIGHTS = {"near_limit": 1.0, "over_limit": 0.3}


@dataclass(frozen=True, slots=True)
class Junk:
    kind: str
    frames: tuple[bytes, ...]
    expect: str
    sender: str = ANON
    #: The socket identity to send with (``None``: any socket of the sender kind).
    identity: str | None = None


def pack(body: Any) -> bytes:
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def mutate(rng: random.Random, data: bytes, edits: int = 4) -> bytes:
    """Up to ``edits`` random edits: overwrite, insert, delete, cut, or a msgpack marker."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, edits)):
        at = rng.randrange(len(buf) + 1)
        edit = rng.randrange(5)
        if edit == 0 and buf:
            buf[at % len(buf)] ^= 1 << rng.randrange(8)
        elif edit == 1:
            buf[at:at] = rng.randbytes(rng.randint(1, 4))
        elif edit == 2 and buf:
            del buf[at : at + rng.randint(1, 4)]
        elif edit == 3:
            del buf[at:]
        else:  # nil, never-used, bool, bin8, ext8, fixext1, array16, map32, uint64 markers
            marker = rng.choice([0xC0, 0xC1, 0xC3, 0xC4, 0xC7, 0xD4, 0xDC, 0xDF, 0xCF])
            buf[at:at] = bytes([marker])
    return bytes(buf)


def truncate(rng: random.Random, data: bytes) -> bytes:
    """A strict prefix of one msgpack object: never a complete object."""
    return data[: rng.randrange(len(data))]


# --------------------------------------------------------------------------- templates


def task(task_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "kind": NO_KIND, "difficulty": 1, **fields}


def result(task_id: str, attempt: int = 1, worker: str = "w", **fields: Any) -> dict[str, Any]:
    ok = fields.pop("success", True)
    return {
        "task_id": task_id,
        "attempt": attempt,
        "worker": worker,
        "worker_id": worker,
        "success": ok,
        "status": "succeeded" if ok else "failed",
        "output": {"forged": True},
        **fields,
    }


def register(agent_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "register",
        "version": PROTOCOL_VERSION,
        "agent_id": agent_id,
        "name": f"junk-{agent_id}",
        "role": "worker",
        "workspace_id": "taskmesh",
        "skill": 1,
        "capacity": 0,  # never given work, never listed in status: only its messages matter
        "kinds": ["simulate"],
        **fields,
    }


class JunkFactory:
    """Seeded junk aimed at a manager whose workers and tasks the caller names.

    ``worker_ids``/``worker_names``: live workers to impersonate in message
    fields; ``task_ids``: real tasks to forge results for.
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        worker_ids: list[str],
        worker_names: list[str],
        task_ids: list[str],
        anon_ids: list[str],
        max_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.rng = rng
        self.anon_ids = anon_ids
        self.worker_ids = worker_ids or ["nobody"]
        self.worker_names = worker_names or ["nobody"]
        self.task_ids = task_ids or ["none"]
        self.max_bytes = max_bytes
        self._n = 0
        self.makers = {
            "random_bytes": self.random_bytes,
            "truncated": self.truncated,
            "mutated": self.mutated,
            "frame_count": self.frame_count,
            "not_a_message": self.not_a_message,
            "unknown_type": self.unknown_type,
            "manager_bound_type": self.manager_bound_type,
            "wrong_types": self.wrong_types,
            "out_of_range": self.out_of_range,
            "unregistered_peer": self.unregistered_peer,
            "bad_register": self.bad_register,
            "forged_result": self.forged_result,
            "odd_request": self.odd_request,
            "near_limit": self.near_limit,
            "over_limit": self.over_limit,
            "tasks_huge_offset": self.tasks_huge_offset,
            "claimed_identity": self.claimed_identity,
        }

    def frames(self, count: int, kinds: list[str] | None = None) -> Iterator[Junk]:
        """``count`` items of the given kinds (default: every kind but ``KNOWN_BUGS``)."""
        names = kinds or [k for k in self.makers if k not in KNOWN_BUGS]
        weights = [WEIGHTS.get(k, 10.0) for k in names]
        for name in self.rng.choices(names, weights, k=count):
            yield self.makers[name]()

    # ------------------------------------------------------------------ helpers

    def _uid(self) -> str:
        self._n += 1
        return f"fz{self._n}"

    def _int(self) -> int:
        """An integer msgpack can carry, biased to the edges."""
        edges = [0, -1, 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]
        return self.rng.choice(edges) if self.rng.random() < 0.6 else self.rng.randint(-99, 99)

    def _valid(self) -> dict[str, Any]:
        """A well-formed message of a type the manager handles (safe to mutate)."""
        r = self.rng
        choices: list[dict[str, Any]] = [
            {"type": "heartbeat", "epoch": "0" * 16, "time": r.randrange(2**40), "running": 1},
            {"type": "ready", "epoch": "f" * 16},
            {"type": "drain", "grace": 1.5},
            {"type": "bye", "reason": "fuzz"},
            {"type": "status", "req": r.randrange(2**16)},
            {"type": "tasks", "req": 3, "ids": [r.choice(self.task_ids), "zz"]},
            {"type": "submit", "req": 9, "tasks": [task(self._uid(), payload=[1, "x"])]},
            {"type": "results", "results": [result(r.choice(self.task_ids))]},
            {"type": "direct", "sender": "a", "target": "b", "seq": 1, "time": 2, "data": b"hi"},
            {"type": "broadcast", "sender": "a", "seq": 1, "time": 2, "data": b"hey"},
            register(self._uid()),
        ]
        return r.choice(choices)

    # ------------------------------------------------------------------ kinds

    def random_bytes(self) -> Junk:
        data = self.rng.randbytes(self.rng.randint(0, 200))
        if data[:1] in (b"\xde", b"\xdf") or 0x80 <= (data[:1] or b"\x00")[0] <= 0x8F:
            data = b"\xc1" + data  # a map prefix might still decode: keep it surely invalid
        return Junk("random_bytes", (data,), "bad")

    def truncated(self) -> Junk:
        return Junk("truncated", (truncate(self.rng, pack(self._valid())),), "bad")

    def mutated(self) -> Junk:
        return Junk("mutated", (mutate(self.rng, pack(self._valid())),), "any")

    def frame_count(self) -> Junk:
        body = pack(self._valid())
        extra = tuple(self.rng.choice([b"", body, b"\x00"]) for _ in range(self.rng.randint(1, 3)))
        return Junk("frame_count", (body, *extra), "bad")

    def not_a_message(self) -> Junk:
        value = self.rng.choice(
            [[1, 2, 3], "register", 42, None, b"bytes", {"no": "type"}, {"type": 7}, {"type": None}]
        )
        return Junk("not_a_message", (pack(value),), "bad")

    def unknown_type(self) -> Junk:
        name = self.rng.choice(["nope", "REGISTER", "submit ", "", "x" * 300, "\u00e9t\u00e9"])
        return Junk("unknown_type", (pack({"type": name, "req": 1}),), "bad")

    def manager_bound_type(self) -> Junk:
        """A message only the manager sends: well-formed (refused as unexpected) or bare."""
        r = self.rng
        agent = {"id": "a", "name": "n", "role": "worker"}
        valid: list[dict[str, Any]] = [
            {"type": "error", "code": "c", "message": "m"},
            {"type": "probe", "agent_id": r.choice(self.worker_ids), "epoch": "e"},
            {"type": "joined", "agent": agent},
            {"type": "left", "agent": agent, "reason": "r"},
            {"type": "roster", "agents": [agent]},
            {"type": "assign", "epoch": "e", "jobs": [{"task": task("t"), "attempt": 1}]},
            {"type": "result_ack", "keys": [{"task_id": r.choice(self.task_ids), "attempt": 1}]},
            {"type": "submit_reply", "req": 1, "accepted": [], "known": []},
            {"type": "tasks_reply", "req": 1, "tasks": []},
            {
                "type": "welcome",
                "version": PROTOCOL_VERSION,
                "manager_id": "m",
                "manager_name": "m",
                "epoch": "e",
                "pub_endpoint": "tcp://127.0.0.1:1",
                "heartbeat_interval": 1.0,
                "liveness": 3,
            },
        ]
        body = r.choice(valid) if r.random() < 0.7 else {"type": r.choice(MANAGER_TO_PEER)}
        return Junk("manager_bound_type", (pack(body),), "bad")

    def wrong_types(self) -> Junk:
        """A handled message with one field of a type its schema refuses."""
        r = self.rng
        wrong: list[dict[str, Any]] = [
            {"type": "heartbeat", "epoch": 7, "time": 1},
            {"type": "heartbeat", "epoch": "e", "time": "now"},
            {"type": "heartbeat", "epoch": "e", "time": 1.5},
            {"type": "heartbeat", "epoch": "e", "time": True},
            {"type": "status", "req": "1"},
            {"type": "status", "req": None},
            {"type": "tasks", "req": 1, "ids": "1"},
            {"type": "tasks", "req": 1, "ids": [1, 2]},
            {"type": "tasks", "req": 1, "after": 1.0},
            {"type": "submit", "req": 1, "tasks": {"id": "x"}},
            {"type": "submit", "req": 1, "tasks": [{"id": 5}]},
            {"type": "submit", "req": 1, "tasks": [task("t", difficulty="hard")]},
            {"type": "submit", "req": 1, "tasks": [task("t", timeout="soon")]},
            {"type": "submit", "req": 1, "tasks": [task("t", surprise=1)]},
            {"type": "results", "results": [{**result("1"), "attempt": "1"}]},
            {"type": "results", "results": [result("1", error="boom")]},
            {"type": "results", "results": [{**result("1"), "success": "yes"}]},
            {"type": "direct", "sender": "a", "target": "b", "seq": 1, "time": 2, "data": "str"},
            {"type": "broadcast", "sender": b"a", "seq": 1, "time": 2, "data": b""},
            {"type": "ready", "epoch": ["x"]},
            {"type": "drain", "grace": "long"},
            {**register(self._uid()), "kinds": "simulate"},
            {**register(self._uid()), "skill": "9"},
            {**register(self._uid()), "holding": [{"task_id": "1"}]},
            {**register(self._uid()), "version": "1"},
        ]
        return Junk("wrong_types", (pack(r.choice(wrong)),), "bad")

    def out_of_range(self) -> Junk:
        """Numbers the schema's ``__post_init__`` rules refuse."""
        r = self.rng
        bad_task = r.choice(
            [
                task("t", difficulty=r.choice([0, 11, -1, 2**64 - 1, -(2**63)])),
                task("t", timeout=r.choice([0.0, -1.0, float("inf"), float("nan"), -(2**63)])),
                task("t", max_attempts=r.choice([0, -1, -(2**63)])),
                task(""),
                task("t", kind=""),
            ]
        )
        bad_result = r.choice(
            [
                result("1", attempt=-1),
                result("1", attempt=-(2**63)),
                {**result("1"), "status": "exploded"},
                {**result("1"), "success": False},  # status 'succeeded' but not success
            ]
        )
        body = r.choice(
            [
                {"type": "submit", "req": self._int(), "tasks": [bad_task]},
                {"type": "results", "results": [bad_result]},
            ]
        )
        return Junk("out_of_range", (pack(body),), "bad")

    def unregistered_peer(self) -> Junk:
        """Peer messages from a sender the manager never registered, some naming live workers."""
        r = self.rng
        live = r.choice(self.worker_ids)
        body = r.choice(
            [
                {"type": "heartbeat", "epoch": "0" * 16, "time": self._int()},
                {"type": "ready", "epoch": "0" * 16},
                {"type": "drain", "grace": r.choice([0.0, -1.0, float("nan"), 1e308])},
                {"type": "results", "results": [result(r.choice(self.task_ids), worker=live)]},
                {"type": "direct", "sender": live, "target": "x", "seq": 1, "time": 1, "data": b""},
                {"type": "broadcast", "sender": live, "seq": 1, "time": self._int(), "data": b""},
            ]
        )
        return Junk("unregistered_peer", (pack(body),), "unknown_peer")

    def bad_register(self) -> Junk:
        """Registrations the manager must refuse with an ``Error`` (counted nowhere today)."""
        r = self.rng
        me = r.choice(self.anon_ids)  # the sender's own identity: refused for what it says
        body = r.choice(
            [
                register(me, version=r.choice([0, PROTOCOL_VERSION + 1, -1, 2**64 - 1])),
                register(me, workspace_id=r.choice(["", "elsewhere", "taskmesh ", "x" * 1000])),
                register(r.choice(self.worker_ids)),  # a live worker's id from another socket
                register(""),
                register(me, skill=-1),
                register(me, capacity=-(2**63)),
            ]
        )
        return Junk("bad_register", (pack(body),), "refused", identity=me)

    def forged_result(self) -> Junk:
        """From a registered junk peer: a result for a task that is not its own."""
        r = self.rng
        task_id = r.choice([*self.task_ids, "never-submitted"])
        forged = result(
            task_id,
            attempt=r.choice([1, 1, 2, 0, 2**63]),
            worker=r.choice(self.worker_names),
            success=r.random() < 0.5,
        )
        return Junk(
            "forged_result", (pack({"type": "results", "results": [forged]}),), "result", REGISTERED
        )

    def odd_request(self) -> Junk:
        """Valid requests with edge values: answered as usual, counted nowhere."""
        r = self.rng
        body = r.choice(
            [
                {"type": "status", "req": self._int()},
                {"type": "tasks", "req": self._int(), "after": r.choice([-1, -(2**63), 0, 2])},
                {"type": "tasks", "req": 1, "ids": [f"id{i}" for i in range(r.randint(0, 3000))]},
                {"type": "tasks", "req": 1, "ids": [r.choice(self.task_ids)] * 50},
                {"type": "submit", "req": 1, "tasks": []},
                {
                    "type": "submit",
                    "req": self._int(),
                    "tasks": [
                        task(
                            self._uid(),
                            difficulty=r.randint(1, 10),
                            timeout=r.choice([None, 1e-300, 1e300]),
                            max_attempts=r.choice([None, 1, 2**64 - 1]),
                            payload={"nested": [[[[1]]]], "b": b"\x00" * r.randint(0, 64)},
                        )
                    ],
                },
            ]
        )
        return Junk("odd_request", (pack(body),), "accepted")

    def near_limit(self) -> Junk:
        """Sizes around the codec's limit, still under ZeroMQ's MAXMSGSIZE."""
        r = self.rng
        if r.random() < 0.5:  # just over the codec's limit: decoded as too_large
            size = self.max_bytes + r.randint(1, 1000)
            return Junk("near_limit", (b"\xc1" * size,), "bad")
        # A task just over MAX_ITEM_BYTES in a message just under the limit: too_large reply.
        pad = self.max_bytes // 4 + r.randint(1, 2000)
        big = task(self._uid(), description="d" * pad)
        return Junk("near_limit", (pack({"type": "submit", "req": 1, "tasks": [big]}),), "refused")

    def over_limit(self) -> Junk:
        """Over MAXMSGSIZE (limit + 1024): ZeroMQ drops the connection, the manager sees nothing."""
        size = self.max_bytes + 1024 + self.rng.choice([1, 4096, self.max_bytes])
        return Junk("over_limit", (b"\x00" * size,), "dropped", THROWAWAY)

    def tasks_huge_offset(self) -> Junk:
        offset = self.rng.choice([sys.maxsize - 5, sys.maxsize, 2**63, 2**64 - 1])
        body = pack({"type": "tasks", "req": 5, "after": offset})
        return Junk("tasks_huge_offset", (body,), "accepted")

    def claimed_identity(self) -> Junk:
        """A heartbeat from a socket whose identity is a live worker's agent id (workers
        connect with identities of their own: this one is simply not registered)."""
        body = pack({"type": "heartbeat", "epoch": "0" * 16, "time": 1})
        identity = self.rng.choice(self.worker_ids)
        return Junk("claimed_identity", (body,), "unknown_peer", identity=identity)
