"""The manager's sockets: a ROUTER for directed traffic and a PUB for broadcasts.

The one I/O layer of the manager process.  It binds, reads the ROUTER in
batches, decodes at one place where peer input may fail (a bad frame becomes
a warning, a count and, where the sender is routable, an ``Error`` reply),
dispatches by message type, commits once per batch and only then sends the
replies that promised durability (``post``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import zmq
import zmq.asyncio
from loguru import logger

from protocol import Error, Message, ProtocolError, decode, encode
from worker.sockets import bind, configure, send_frames

Handler = Callable[[bytes, Any], Awaitable[None]]

#: Messages handled between two commits of the journal (group commit).
RECV_BATCH = 256
#: Sends between two forced yields to the event loop.
YIELD_EVERY = 256


def peer_name(ident: bytes) -> str:
    """A ROUTER identity as text (agent ids are UTF-8; anything else is escaped)."""
    return ident.decode("utf-8", "backslashreplace")


class Endpoint:
    """ROUTER + PUB with batched receive, group commit and bounded sends."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        pub_port: int,
        max_message_bytes: int,
        send_timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.host = host
        self.port = port
        self.pub_port = pub_port
        self.max_bytes = max_message_bytes
        self.send_timeout = send_timeout
        self.clock = clock
        self.endpoint = ""
        self.pub_endpoint = ""
        self.counters: Counter[str] = Counter()
        self._handlers: dict[type[Message], Handler] = {}
        self._ctx: zmq.asyncio.Context | None = None
        self._router: zmq.asyncio.Socket | None = None
        self._pub: zmq.asyncio.Socket | None = None
        self._outbox: list[tuple[bytes, Message | bytes]] = []
        self._drained_at = clock()  # when the ROUTER was last read to the end
        self._recv_idle = False
        self._published = 0

    def bind_sockets(self) -> None:
        """Create the context and bind both sockets (synchronous, so errors surface at once)."""
        self._ctx = zmq.asyncio.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        configure(self._router, self.max_bytes)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self._pub = self._ctx.socket(zmq.PUB)
        configure(self._pub, self.max_bytes)
        self._pub.setsockopt(zmq.SNDHWM, 100_000)
        try:
            self.endpoint = bind(self._router, self.host, self.port)
            self.pub_endpoint = bind(self._pub, self.host, self.pub_port)
        except (zmq.ZMQError, ValueError):
            self._close_sockets()
            raise

    def _close_sockets(self) -> None:
        if self._router is not None:
            self._router.close(linger=200)  # let the goodbyes go out
        if self._pub is not None:
            self._pub.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
        self._router = self._pub = self._ctx = None

    def heard_until(self) -> float:
        """Until when every message that arrived has been read (for liveness)."""
        if self._recv_idle:  # never peek at zmq.EVENTS: it stalls an asyncio socket
            self._drained_at = self.clock()
        return self._drained_at

    def _heard_from(self, ident: bytes) -> None:
        """Hook: any message from ``ident`` arrived (proof of life)."""

    async def send(self, ident: bytes, msg: Message | bytes) -> bool:
        """Send a message (or one already encoded) to one peer.

        ``False`` when ZeroMQ cannot route to it (it is gone) or it takes
        nothing within ``send_timeout``.
        """
        if self._router is None:
            return False
        body = msg if isinstance(msg, bytes) else encode(msg)
        try:
            await send_frames(self._router, [ident, body], self.send_timeout)
        except (zmq.ZMQError, TimeoutError) as exc:
            self.counters["send_failures"] += 1
            logger.debug("cannot send to {}: {!r}", ident[:64], exc)
            return False
        return True

    async def _publish(self, msg: Message) -> None:
        if self._pub is not None:
            await self._pub.send(encode(msg))
            self._published += 1
            if self._published % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a publishing loop must not starve heartbeats

    def post(self, ident: bytes, msg: Message | bytes) -> None:
        """Send after the next commit: for replies that promise durability (acks)."""
        self._outbox.append((ident, msg))

    async def _flush(self) -> None:
        """Commit what the handled batch changed, then send what it earned."""
        self._commit()
        outbox, self._outbox = self._outbox, []
        for ident, msg in outbox:
            await self.send(ident, msg)

    def _commit(self) -> None:
        """Hook: make the state changes of the last batch durable."""

    async def _recv_loop(self) -> None:
        """Handle whatever is waiting (up to ``RECV_BATCH``), then commit once and reply."""
        router = self._router
        assert router is not None
        while True:
            self._recv_idle = True
            frames = await router.recv_multipart()
            self._recv_idle = False
            await self._handle_frames(frames)
            for _ in range(RECV_BATCH - 1):
                try:
                    frames = await router.recv_multipart(flags=zmq.NOBLOCK)
                except zmq.Again:
                    self._drained_at = self.clock()
                    break
                await self._handle_frames(frames)
            await self._flush()
            await asyncio.sleep(0)  # let the timers run between batches

    async def _handle_frames(self, frames: list[bytes]) -> None:
        """The one place where peer input can fail; nothing here stops the loop."""
        ident = frames[0]
        if len(frames) != 2:
            self._bad(ident, f"expected 1 body frame, got {len(frames) - 1}", b"")
            return
        body = frames[1]
        try:
            msg = decode(body, self.max_bytes)
        except ProtocolError as exc:
            self._bad(ident, str(exc), body)
            await self.send(ident, Error(code=exc.code, message=str(exc)))
            return
        self._heard_from(ident)
        handler = self._handlers.get(type(msg))
        if handler is None:
            self._bad(ident, f"unexpected {msg.TYPE} message", body)
            await self.send(ident, Error(code="unexpected", message=f"{msg.TYPE} is not for me"))
            return
        self.counters[f"rx.{msg.TYPE}"] += 1
        try:
            await handler(ident, msg)
        except Exception:
            self.counters["handler_errors"] += 1
            logger.exception("handler for {} from {} failed", msg.TYPE, peer_name(ident))

    def _bad(self, ident: bytes, why: str, body: bytes) -> None:
        self.counters["bad_messages"] += 1
        logger.warning(
            "bad message from {}: {} (first bytes {!r})", peer_name(ident), why, body[:32]
        )
