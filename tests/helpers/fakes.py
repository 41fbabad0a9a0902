"""In-memory stand-ins for the sockets and the clock: the state machines without I/O.

``FakeRouter`` takes the place of the manager's ``ZmqRouter`` and ``FakeLink``
of a worker's ``ManagerLink``; both decode what is sent, so a test reads
messages, not bytes.  Everything else (admin, task service, journal on a real
SQLite file, worker, runner) is the production code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from manager.config import ManagerConfig
from manager.endpoint import Batch, Delivery
from manager.server import build as build_manager
from protocol import (
    PROTOCOL_VERSION,
    Message,
    Probe,
    Ready,
    Register,
    ResultKey,
    decode,
    encode,
)
from worker.config import WorkerConfig
from worker.handlers import Handlers
from worker.server import build as build_worker

M = TypeVar("M", bound=Message)
T = TypeVar("T")


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeRouter:
    """The manager's transport: records what is sent; ``unreachable`` idents fail,
    ``full`` ones are not reading (their queue is full)."""

    endpoint: str = "tcp://127.0.0.1:1"
    pub_endpoint: str = "tcp://127.0.0.1:2"
    sent: list[tuple[str, Message]] = field(default_factory=list)
    published: list[Message] = field(default_factory=list)
    unreachable: set[str] = field(default_factory=set)
    full: set[str] = field(default_factory=set)
    closed: bool = False
    pub_renewals: int = 0

    def open(self) -> None:
        pass

    async def recv_batch(self, most: int) -> Batch:
        await asyncio.Event().wait()  # tests hand frames to Endpoint.handle directly
        raise AssertionError("unreachable")

    def send(self, ident: bytes, body: bytes) -> Delivery:
        if ident.decode() in self.unreachable:
            return Delivery.GONE
        if ident.decode() in self.full:
            return Delivery.FULL
        self.sent.append((ident.decode(), decode(body, 1 << 30)))
        return Delivery.SENT

    async def publish(self, body: bytes) -> None:
        self.published.append(decode(body, 1 << 30))

    async def renew_pub(self) -> bool:
        self.pub_renewals += 1
        return True

    def close(self) -> None:
        self.closed = True

    def to(self, ident: str, kind: type[M]) -> list[M]:
        """Messages of type ``kind`` sent to ``ident``, oldest first."""
        return [m for i, m in self.sent if i == ident and isinstance(m, kind)]


class ManagerHarness:
    """A manager (admin + task service + journal file) driven message by message."""

    def __init__(self, db: Path, **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.router = FakeRouter()
        base = {"db": str(db), "heartbeat_interval": 1.0, "liveness": 3, **settings}
        self.admin, self.service = build_manager(
            ManagerConfig(**base), transport=self.router, clock=self.clock
        )
        self.admin.open()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def handle(self, ident: str, msg: Message, key: str = "") -> None:
        """Decode and dispatch one message, as the receive loop does (nothing sent yet).

        ``key``: the CURVE key it came with (as ZAP would have named it).
        """
        self.admin.endpoint.handle([ident.encode(), encode(msg)], key)

    def flush(self) -> None:
        """End the batch: commit, then send what it earned."""
        self.run(self.admin.endpoint.flush())

    def deliver(self, ident: str, msg: Message, key: str = "") -> None:
        self.handle(ident, msg, key)
        self.flush()

    def tick(self, seconds: float = 0.0, alive: tuple[str, ...] = ()) -> None:
        """Let ``seconds`` pass in ticks of at most half a second.

        The agents named in ``alive`` heartbeat meanwhile; the others are silent.
        """
        while True:
            step = min(seconds, 0.5)
            seconds -= step
            self.clock.advance(step)
            for ident in alive:
                self.admin.registry.touch(ident)
            self.admin.tick()
            self.flush()
            if seconds <= 0:
                return

    def join(
        self,
        ident: str,
        *,
        skill: int = 5,
        capacity: int = 1,
        kinds: tuple[str, ...] = ("simulate", "echo"),
        holding: tuple[tuple[str, int], ...] = (),
        key: str = "",
        agent_id: str = "",
    ) -> None:
        """Register on connection ``ident`` (as ``agent_id``, default the same) and prove
        its SUB: it is connected afterwards."""
        agent_id = agent_id or ident
        self.deliver(
            ident,
            Register(
                version=PROTOCOL_VERSION,
                agent_id=agent_id,
                name=agent_id,
                workspace_id=self.admin.workspace_id,
                skill=skill,
                capacity=capacity,
                kinds=list(kinds),
                holding=[ResultKey(task_id=t, attempt=a) for t, a in holding],
            ),
            key,
        )
        self.tick()  # the probe goes out on PUB
        assert any(isinstance(m, Probe) and m.agent_id == agent_id for m in self.router.published)
        self.deliver(ident, Ready(epoch=self.admin.epoch), key)

    def close(self) -> None:
        self.run(self.admin.close(goodbye_wait=0))  # no worker here to register again
        self.loop.close()


class FakeLink:
    """A worker's connection: records sends; ``accepting=False`` makes them fail."""

    def __init__(self) -> None:
        self.sub_endpoint = ""
        self.busy = False
        self.accepting = True
        self.refused = 0  # sends refused while not accepting
        self.sent: list[Message] = []
        self.dealers = 0
        self.subs = 0  # SUB sockets made (connects to a new endpoint and renewals)
        self.heartbeat = (0.0, 0)  # what the sockets are told: (interval, liveness)
        self.closed_with: bytes | None = None
        self.refused = False
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()

    def open(self) -> None:
        self.dealers += 1

    def new_dealer(self) -> None:
        self.dealers += 1

    def retry_refused(self, now: float) -> None:
        if self.refused:  # a refused handshake: the real link waits RETRY_REFUSED first
            self.refused = False
            self.new_dealer()

    def connect_sub(self, endpoint: str) -> None:
        if endpoint != self.sub_endpoint:
            self.subs += 1
        self.sub_endpoint = endpoint

    def renew_sub(self) -> None:
        if self.sub_endpoint:
            self.subs += 1

    def set_heartbeat(self, interval: float, liveness: int) -> None:
        self.heartbeat = (interval, liveness)

    def close(self, last_words: bytes | None = None) -> None:
        self.closed_with = last_words

    def send_nowait(self, body: bytes) -> bool:
        if not self.accepting:
            self.refused += 1
            return False
        self.sent.append(decode(body, 1 << 30))
        return True

    async def send(self, body: bytes, timeout: float) -> None:
        if not self.send_nowait(body):
            raise ConnectionError("not accepting")

    async def from_manager(self) -> AsyncIterator[Message]:
        while True:
            yield await self._inbox.get()

    async def published(self) -> AsyncIterator[Message]:
        await asyncio.Event().wait()
        yield  # type: ignore[misc]  # pragma: no cover

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.sent if isinstance(m, kind)]


def worker_with_fakes(
    handlers: Handlers | None = None, **settings: Any
) -> tuple[Any, Any, FakeLink, FakeClock]:
    """A worker and its runner on a ``FakeLink`` and a ``FakeClock``."""
    link, clock = FakeLink(), FakeClock()
    cfg = WorkerConfig(**{"name": "w", "skill": 5, "heartbeat_interval": 1.0, **settings})
    worker, runner = build_worker(cfg, handlers or Handlers(), link=link, clock=clock)
    return worker, runner, link, clock
