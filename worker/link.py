"""A worker's two sockets to the manager: a DEALER for directed traffic, a SUB for broadcasts.

The one I/O module of an agent process.  It replaces the DEALER wholesale
when the manager goes silent (the Paranoid Pirate way), and the SUB too, so
that no new connection waits behind a stalled one; it follows the PUB
endpoint the manager advertises, bounds reconnecting and heartbeats at the
ZeroMQ level (``runtime.sockets.liveness_options``), never blocks forever on
a send, and turns frames into messages at one place where peer input may fail.

Every DEALER gets an identity of its own (``<agent id>@<random hex>``): the
manager does not let a new connection take over a live identity
(no ``ROUTER_HANDOVER``), so re-using one could leave a new DEALER unheard
until the old connection is gone.  With CURVE (``curve``) both sockets
authenticate with this worker's key and check the manager's.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any, Protocol, cast

import zmq
import zmq.asyncio
from loguru import logger

from protocol import HEARTBEAT_INTERVAL, LIVENESS, Message, ProtocolError, decode
from runtime.agent import YIELD_EVERY
from runtime.handshake import HandshakeWatch
from runtime.keys import CurveClient
from runtime.sockets import configure, drain_bodies, liveness_options, send_frames, tcp
from runtime.supervise import cancelling
from runtime.throttle import Throttle


class Link(Protocol):
    """What a ``Worker`` needs of its connection to the manager (``ManagerLink``)."""

    sub_endpoint: str
    busy: bool

    def open(self) -> None: ...

    def new_dealer(self) -> None: ...

    def retry_refused(self, now: float) -> None: ...

    def connect_sub(self, endpoint: str) -> None: ...

    def renew_sub(self) -> None: ...

    def set_heartbeat(self, interval: float, liveness: int) -> None: ...

    def close(self, last_words: bytes | None = None) -> None: ...

    def send_nowait(self, body: bytes) -> bool: ...

    async def send(self, body: bytes, timeout: float) -> None: ...

    def from_manager(self) -> AsyncIterator[Message]: ...

    def published(self) -> AsyncIterator[Message]: ...


#: Bytes of the agent id kept in a DEALER identity (libzmq allows 255 in all).
ROUTE_PREFIX = 200
#: Seconds between new DEALERs after a refused handshake (a key not listed yet;
#: managers re-read their key directories every 2 s).
RETRY_REFUSED = 2.0


def route_for(agent_id: str) -> bytes:
    """A fresh ROUTER identity for one connection of ``agent_id``."""
    return agent_id.encode()[:ROUTE_PREFIX] + b"@" + secrets.token_hex(8).encode()


class ManagerLink:
    def __init__(
        self,
        identity: str,
        host: str,
        port: int,
        max_bytes: int,
        label: str,
        curve: CurveClient | None = None,
    ) -> None:
        self.identity = identity
        self.curve = curve
        self.endpoint = tcp(host, port)
        self.max_bytes = max_bytes
        self.label = label
        self.sub_endpoint = ""
        #: True while a received message is being handled: the manager is alive.
        self.busy = False
        self._ctx: zmq.asyncio.Context | None = None
        self._dealer: zmq.asyncio.Socket | None = None
        self._sub: zmq.asyncio.Socket | None = None
        self._sent = 0
        self._received = 0
        self._watches: dict[str, HandshakeWatch] = {}
        self._refusals = Throttle("handshake failures")
        #: The DEALER's handshake failed (e.g. its key is not listed yet): libzmq does
        #: not retry a refused handshake on that socket, so only a new one can get in.
        self.refused = False
        self._refused_retry = -float("inf")
        self._interval = HEARTBEAT_INTERVAL
        self._liveness = LIVENESS

    def open(self) -> None:
        self._ctx = zmq.asyncio.Context()
        self.new_dealer()

    def new_dealer(self) -> None:
        """A fresh DEALER: drops whatever the old connection had queued."""
        assert self._ctx is not None
        self.refused = False
        if self._dealer is not None:
            self._unwatch("DEALER")
            self._dealer.close(linger=0)
        self._dealer = self._ctx.socket(zmq.DEALER)
        configure(self._dealer, self.max_bytes)
        # No TTL: the manager must not discard what it queued for a worker that
        # is only unreachable; if this connection lives through the outage, TCP
        # delivers it, and if it is replaced, the worker registers with `holding`.
        liveness_options(self._dealer, self._interval, self._liveness, ttl=False)
        if self.curve is not None:
            self.curve.apply(self._dealer)
        self._watch(self._dealer, "DEALER")
        self._dealer.setsockopt(zmq.IDENTITY, route_for(self.identity))
        self._dealer.setsockopt(zmq.IMMEDIATE, 1)  # queue only on a live connection
        self._dealer.connect(self.endpoint)

    def retry_refused(self, now: float) -> None:
        """After a refused handshake, a new DEALER each ``RETRY_REFUSED`` s (now listed?)."""
        if self.refused and now - self._refused_retry >= RETRY_REFUSED:
            self._refused_retry = now
            self.new_dealer()

    def connect_sub(self, endpoint: str) -> None:
        """Subscribe to everything at ``endpoint`` (a no-op if already there)."""
        assert self._ctx is not None
        if self._sub is not None and endpoint == self.sub_endpoint:
            return
        if self._sub is not None:
            self._unwatch("SUB")
            self._sub.close(linger=0)
        self._sub = self._ctx.socket(zmq.SUB)
        configure(self._sub, self.max_bytes)
        liveness_options(self._sub, self._interval, self._liveness)
        if self.curve is not None:
            self.curve.apply(self._sub)
        self._watch(self._sub, "SUB")
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.connect(endpoint)
        self.sub_endpoint = endpoint

    def renew_sub(self) -> None:
        """A fresh SUB on the same endpoint: never wait behind a stalled connection."""
        endpoint, self.sub_endpoint = self.sub_endpoint, ""
        if endpoint:
            self.connect_sub(endpoint)

    def set_heartbeat(self, interval: float, liveness: int) -> None:
        """Heartbeat and reconnect timing (the manager's, from ``welcome``) for every connection."""
        if (interval, liveness) == (self._interval, self._liveness):
            return
        self._interval, self._liveness = interval, liveness
        if self._dealer is not None:  # applies to its next connection
            liveness_options(self._dealer, interval, liveness, ttl=False)
        if self._sub is not None:
            liveness_options(self._sub, interval, liveness)

    def _watch(self, sock: zmq.asyncio.Socket, which: str) -> None:
        """Log (rate-limited) why a handshake of ``sock`` with the manager failed."""

        def report(why: str) -> None:
            if which == "DEALER":
                self.refused = True
            if self._refusals.allow(which):
                logger.error("{}: {} connection to the manager: {}", self.label, which, why)

        watch = HandshakeWatch(sock, self.curve is not None, report)
        watch.start()
        self._watches[which] = watch

    def _unwatch(self, which: str) -> None:
        watch = self._watches.pop(which, None)
        if watch is not None:
            watch.close()

    def close(self, last_words: bytes | None = None) -> None:
        for which in list(self._watches):
            self._unwatch(which)
        if last_words is not None:
            self.send_nowait(last_words)
        if self._dealer is not None:
            self._dealer.close(linger=200)  # let the last words go out
        if self._sub is not None:
            self._sub.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
        self._dealer = self._sub = self._ctx = None

    def send_nowait(self, body: bytes) -> bool:
        """Send if a connection can take it now; ``False`` otherwise."""
        if self._dealer is None:
            return False
        fut = cast("asyncio.Future[Any]", self._dealer.send(body, zmq.NOBLOCK))
        if fut.done():
            return fut.exception() is None
        fut.add_done_callback(_retrieve)  # queued behind an earlier send
        return True

    async def send(self, body: bytes, timeout: float) -> None:
        """Send, waiting at most ``timeout`` for room; ``ConnectionError`` if none came."""
        if self._dealer is None:
            raise ConnectionError(f"{self.label} has no connection")
        try:
            await send_frames(self._dealer, [body], timeout)
        except TimeoutError:
            raise ConnectionError(f"{self.label}: the manager is not taking messages") from None
        self._sent += 1
        if self._sent % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # a sending loop must not starve heartbeats

    async def from_manager(self) -> AsyncIterator[Message]:
        """Messages on the DEALER, across socket replacements."""
        while True:
            dealer = self._dealer
            assert dealer is not None
            # Never read zmq.EVENTS on an asyncio socket to peek: it eats the
            # edge-triggered wake-up and stalls the socket.  Track busyness instead.
            self.busy = False
            try:
                frames = await dealer.recv_multipart()
            except (zmq.ZMQError, asyncio.CancelledError):
                if dealer is self._dealer or cancelling():
                    raise
                continue  # the socket was replaced (closing it cancelled our receive)
            self.busy = True
            msg = self._decode(frames, "manager")
            if msg is not None:
                yield msg

    async def published(self) -> AsyncIterator[Message]:
        """Messages on the SUB (once the manager has told us where), across replacements."""
        while True:
            sub = self._sub
            if sub is None:
                await asyncio.sleep(0.02)
                continue
            try:  # one frame per message on a PUB: plain receives, no frame lists
                batch = [await sub.recv()]
                batch += drain_bodies(sub, YIELD_EVERY - 1)
            except (zmq.ZMQError, asyncio.CancelledError):
                if sub is self._sub or cancelling():
                    raise
                continue  # replaced (a new PUB endpoint, or renewed)
            for body in batch:
                msg = self._decode([body], "broadcast")
                if msg is not None:
                    yield msg
            await asyncio.sleep(0)  # a flood of broadcasts must not starve heartbeats

    def _decode(self, frames: list[bytes], where: str) -> Message | None:
        if len(frames) != 1:
            logger.warning("{}: {} message with {} frames dropped", self.label, where, len(frames))
            return None
        try:
            return decode(frames[0], self.max_bytes)
        except ProtocolError as exc:
            logger.warning("{}: bad {} message: {} ({!r})", self.label, where, exc, frames[0][:32])
            return None


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
