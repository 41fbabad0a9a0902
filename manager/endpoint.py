"""The manager's message pump: receive in batches, decode, dispatch, commit, then reply.

The one place where peer input enters the manager.  A frame that cannot be
decoded becomes a warning, a count and (the sender is routable) an ``Error``
reply; a handler's bug is logged and counted; nothing here stops the loop.

Handlers never send: they ``post`` replies and ``publish`` broadcasts, which
wait in the outbox.  ``flush`` first calls ``before_ack`` (the journal's
commit) and only then sends what the outbox holds, so every acknowledgement
leaves after the state it acknowledges is durable (group commit: one commit
per received batch).  The sockets themselves are a ``Transport``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol

from loguru import logger

from protocol import Error, Message, ProtocolError, decode, encode
from runtime.agent import YIELD_EVERY

Dispatch = Callable[[bytes, Message], None]
OnFail = Callable[[], None]

#: Messages handled between two commits of the journal (group commit).
RECV_BATCH = 256


class Transport(Protocol):
    """What ``Endpoint`` needs of the sockets (``manager.transport.ZmqRouter``)."""

    endpoint: str
    pub_endpoint: str

    def open(self) -> None: ...

    async def recv_batch(self, most: int) -> list[list[bytes]]:
        """Wait for a message; return it with up to ``most - 1`` more already waiting."""
        ...

    async def send(self, ident: bytes, body: bytes) -> bool: ...

    async def publish(self, body: bytes) -> None: ...

    def close(self) -> None: ...


def peer_name(ident: bytes) -> str:
    """A ROUTER identity as text (agent ids are UTF-8; anything else is escaped)."""
    return ident.decode("utf-8", "backslashreplace")


def _nothing() -> None:
    pass


async def _no_wait() -> None:
    pass


class Endpoint:
    """Batched receive, decode, dispatch, group commit and the outbox, over a ``Transport``."""

    def __init__(
        self,
        transport: Transport,
        dispatch: Dispatch,
        *,
        max_bytes: int,
        clock: Callable[[], float],
        before_ack: Callable[[], None] = _nothing,
        on_unreachable: Callable[[bytes], None] | None = None,
        room: Callable[[], Awaitable[None]] = _no_wait,
    ) -> None:
        self.transport = transport
        self.dispatch = dispatch
        self.max_bytes = max_bytes
        self.clock = clock
        self.before_ack = before_ack
        self.on_unreachable = on_unreachable
        self.room = room
        self.counters: Counter[str] = Counter()
        self._outbox: list[tuple[bytes | None, bytes, OnFail | None]] = []
        self._early: list[tuple[bytes | None, bytes, OnFail | None]] = []
        self._drained_at = clock()  # when the ROUTER was last read to the end
        self._recv_idle = True  # waiting for input (or not reading yet): nothing unread
        #: Bytes of the message being handled (a handler's cheap bound on its parts' sizes).
        self.current_size = 0

    # ------------------------------------------------------------------ outgoing

    def post(
        self,
        ident: bytes,
        msg: Message | bytes,
        on_fail: OnFail | None = None,
        *,
        early: bool = False,
    ) -> None:
        """Send to one peer after the next commit; ``on_fail`` runs if it cannot be delivered.

        ``early``: at the next flush but before its commit, for messages that
        promise nothing durable (they must not wait for the disk).  Raises
        ``ProtocolError`` (code ``too_large``) for a message too large to send.
        """
        body = msg if isinstance(msg, bytes) else self._encode(msg)
        (self._early if early else self._outbox).append((ident, body, on_fail))

    def _encode(self, msg: Message) -> bytes:
        """Encode a reply; one too large to send becomes a short ``too_large`` error."""
        try:
            return encode(msg, self.max_bytes)
        except ProtocolError as exc:
            self.counters["replies_too_large"] += 1
            logger.warning("{} reply not sent: {}", msg.TYPE, str(exc)[:200])
            why = f"the {msg.TYPE} would be over {self.max_bytes} bytes; ask for less"
            return encode(Error(code=exc.code, message=why, req=getattr(msg, "req", 0)))

    def publish(self, msg: Message | bytes) -> None:
        """Send to every subscriber (PUB), in order with the posts around it."""
        body = msg if isinstance(msg, bytes) else self._encode(msg)
        self._outbox.append((None, body, None))

    async def flush(self) -> None:
        """Send the early messages, commit what was handled, then send what it earned."""
        early, self._early = self._early, []
        await self._send(early)
        self.before_ack()
        outbox, self._outbox = self._outbox, []
        await self._send(outbox)

    async def _send(self, outbox: list[tuple[bytes | None, bytes, OnFail | None]]) -> None:
        for count, (ident, body, on_fail) in enumerate(outbox, 1):
            if ident is None:
                await self.transport.publish(body)
            elif not await self.transport.send(ident, body):
                self.counters["send_failures"] += 1
                if on_fail is not None:
                    on_fail()
                elif self.on_unreachable is not None:
                    self.on_unreachable(ident)
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a long outbox must not starve the timers

    # ------------------------------------------------------------------ incoming

    def heard_until(self) -> float:
        """Until when every message that arrived has been read (for liveness)."""
        if self._recv_idle:  # never peek at zmq.EVENTS: it stalls an asyncio socket
            self._drained_at = self.clock()
        return self._drained_at

    async def serve(self) -> None:
        """Handle whatever is waiting (up to ``RECV_BATCH``), then commit once and reply."""
        while True:
            self._recv_idle = True
            batch = await self.transport.recv_batch(RECV_BATCH)
            self._recv_idle = False
            if len(batch) < RECV_BATCH:  # read to the end: whatever arrived is handled
                self._drained_at = self.clock()
            for frames in batch:
                self.handle(frames)
            await self.flush()
            await self.room()  # callbacks backed up: stop reading until they catch up
            await asyncio.sleep(0)  # let the timers run between batches

    def handle(self, frames: list[bytes]) -> None:
        """Decode and dispatch one message; the one place where peer input can fail."""
        ident = frames[0]
        if len(frames) != 2:
            self.bad(ident, f"expected 1 body frame, got {len(frames) - 1}", b"")
            return
        body = frames[1]
        self.current_size = len(body)
        try:
            msg = decode(body, self.max_bytes)
        except ProtocolError as exc:
            self.bad(ident, str(exc), body)
            self.post(ident, Error(code=exc.code, message=str(exc)[:200]))
            return
        self.counters[f"rx.{msg.TYPE}"] += 1
        try:
            self.dispatch(ident, msg)
        except Exception:
            self.counters["handler_errors"] += 1
            logger.exception("handler for {} from {} failed", msg.TYPE, peer_name(ident))

    def bad(self, ident: bytes, why: str, body: bytes) -> None:
        """Count and log a message that was refused."""
        self.counters["bad_messages"] += 1
        logger.warning(
            "bad message from {}: {} (first bytes {!r})",
            peer_name(ident)[:64],
            why[:300],
            body[:32],
        )
