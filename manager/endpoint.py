"""The manager's message pump: receive in batches, decode, dispatch, commit, then reply.

The one place where peer input enters the manager.  A frame that cannot be
decoded becomes a warning, a count and (the sender is routable) an ``Error``
reply; a handler's bug is logged and counted; nothing here stops the loop.

Handlers never send: they ``post`` replies and ``publish`` broadcasts, which
wait in the outbox.  ``flush`` first calls ``before_ack`` (the journal's
commit) and only then sends what the outbox holds, so every acknowledgement
leaves after the state it acknowledges is durable (group commit: one commit
per received batch).  The sockets themselves are a ``Transport``.

Sends never wait.  A peer whose queue is full (it does not read) costs
nobody else anything: a reply to a client is dropped and counted
(``replies_dropped``); messages to a registered agent wait in a queue of
their own, retried at every flush, and if that agent takes nothing for a
liveness window it is declared unreachable (its tasks go to others).
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from loguru import logger

from protocol import Error, Message, ProtocolError, decode, encode
from runtime.agent import YIELD_EVERY
from runtime.throttle import Throttle

Dispatch = Callable[[bytes, Message], None]
OnFail = Callable[[], None]

#: Messages handled between two commits of the journal (group commit).
RECV_BATCH = 256
#: Messages kept for one agent that is not reading, before it is declared unreachable.
MAX_STALLED = 10_000

#: Received messages (each its frames, identity first) and, with CURVE, the key that
#: sent each (ZeroMQ's ``User-Id``, Z85 text); ``None`` without CURVE.
Batch = tuple[list[list[bytes]], list[str] | None]


class Delivery(enum.Enum):
    """What became of one send."""

    SENT = "sent"
    FULL = "full"  # the peer's queue is full: it is not reading
    GONE = "gone"  # no connection has that identity


class Transport(Protocol):
    """What ``Endpoint`` needs of the sockets (``manager.transport.ZmqRouter``)."""

    endpoint: str
    pub_endpoint: str

    def open(self) -> None: ...

    async def recv_batch(self, most: int) -> Batch:
        """Wait for a message; return it with up to ``most - 1`` more already waiting."""
        ...

    def send(self, ident: bytes, body: bytes) -> Delivery:
        """Send now or never: never waits."""
        ...

    async def publish(self, body: bytes) -> None: ...

    async def renew_pub(self) -> bool:
        """Re-open the PUB on the same endpoint: every subscriber connects (and, with
        CURVE, authenticates) again.  ``False``: not re-opened (try again later)."""
        ...

    def close(self) -> None: ...


def peer_name(ident: bytes) -> str:
    """A ROUTER identity as text (agent ids are UTF-8; anything else is escaped)."""
    return ident.decode("utf-8", "backslashreplace")


def _nothing() -> None:
    pass


async def _no_wait() -> None:
    pass


def _never(ident: bytes) -> bool:
    return False


@dataclass(slots=True)
class _Stalled:
    """Messages waiting for an agent whose queue was full, and when it last took one."""

    since: float
    queue: deque[tuple[bytes, OnFail | None]] = field(default_factory=deque)


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
        patient: Callable[[bytes], bool] = _never,
        window: float = 3.0,
        counters: Counter[str] | None = None,
    ) -> None:
        self.transport = transport
        self.dispatch = dispatch
        self.max_bytes = max_bytes
        self.clock = clock
        self.before_ack = before_ack
        self.on_unreachable = on_unreachable
        self.room = room
        self.patient = patient  # is ``ident`` an agent worth waiting for (else: drop)?
        self.window = window
        self.counters: Counter[str] = Counter() if counters is None else counters
        self._stalled: dict[bytes, _Stalled] = {}
        self._bad_log = Throttle("bad messages")
        self._drop_log = Throttle("dropped replies")
        self._outbox: list[tuple[bytes | None, bytes, OnFail | None]] = []
        self._early: list[tuple[bytes | None, bytes, OnFail | None]] = []
        self._drained_at = clock()  # when the ROUTER was last read to the end
        self._recv_idle = True  # waiting for input (or not reading yet): nothing unread
        #: Bytes of the message being handled (a handler's cheap bound on its parts' sizes).
        self.current_size = 0
        #: The CURVE key that sent the message being handled (``""`` without CURVE).
        self.peer_key = ""

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
        if self._stalled:
            self._retry_stalled()
        early, self._early = self._early, []
        await self._send(early)
        self.before_ack()
        outbox, self._outbox = self._outbox, []
        await self._send(outbox)

    async def _send(self, outbox: list[tuple[bytes | None, bytes, OnFail | None]]) -> None:
        for count, (ident, body, on_fail) in enumerate(outbox, 1):
            if ident is None:
                await self.transport.publish(body)
            else:
                self._deliver(ident, body, on_fail)
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a long outbox must not starve the timers

    def _deliver(self, ident: bytes, body: bytes, on_fail: OnFail | None) -> None:
        stalled = self._stalled.get(ident)
        if stalled is not None:  # behind what already waits for it, in order
            stalled.queue.append((body, on_fail))
            if len(stalled.queue) > MAX_STALLED:
                self._give_up(ident, stalled)
            return
        result = self.transport.send(ident, body)
        if result is Delivery.SENT:
            return
        if result is Delivery.GONE:
            self._failed(ident, on_fail)
        elif self.patient(ident):
            self._stalled[ident] = _Stalled(self.clock(), deque([(body, on_fail)]))
            self.counters["sends_deferred"] += 1
        else:
            self.counters["replies_dropped"] += 1
            if on_fail is not None:
                on_fail()
            if self._drop_log.allow(ident):
                who = peer_name(ident)[:64]
                logger.warning("replies to {} dropped: it does not read them", who)

    def _failed(self, ident: bytes, on_fail: OnFail | None) -> None:
        self.counters["send_failures"] += 1
        if on_fail is not None:
            on_fail()
        elif self.on_unreachable is not None:
            self.on_unreachable(ident)

    def _retry_stalled(self) -> None:
        """Send what waits for agents that were not reading; give up on those silent too long."""
        now = self.clock()
        for ident, stalled in list(self._stalled.items()):
            queue = stalled.queue
            while queue:
                result = self.transport.send(ident, queue[0][0])
                if result is Delivery.FULL:
                    break
                _, on_fail = queue.popleft()
                stalled.since = now
                if result is Delivery.GONE:
                    self._failed(ident, on_fail)
            if not queue:
                del self._stalled[ident]
            elif now - stalled.since > self.window:
                self._give_up(ident, stalled)

    def _give_up(self, ident: bytes, stalled: _Stalled) -> None:
        """An agent took nothing for a liveness window (or too much waits): unreachable."""
        del self._stalled[ident]
        self.counters["send_failures"] += len(stalled.queue)
        logger.warning(
            "{} took no message for {:.1f}s; {} not sent",
            peer_name(ident)[:64],
            self.clock() - stalled.since,
            len(stalled.queue),
        )
        for _, on_fail in stalled.queue:
            if on_fail is not None:
                on_fail()
        if self.on_unreachable is not None:
            self.on_unreachable(ident)

    def summarise(self) -> None:
        """Log what the rate limits kept out of the log (at most once a period)."""
        self._bad_log.summary()
        self._drop_log.summary()

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
            batch, keys = await self.transport.recv_batch(RECV_BATCH)
            self._recv_idle = False
            if len(batch) < RECV_BATCH:  # read to the end: whatever arrived is handled
                self._drained_at = self.clock()
            if keys is None:
                for frames in batch:
                    self.handle(frames)
            else:
                for frames, key in zip(batch, keys, strict=True):
                    self.handle(frames, key)
            await self.flush()
            await self.room()  # callbacks backed up: stop reading until they catch up
            await asyncio.sleep(0)  # let the timers run between batches

    def handle(self, frames: list[bytes], key: str = "") -> None:
        """Decode and dispatch one message; the one place where peer input can fail.

        ``key``: the CURVE key that sent it (``peer_key`` while it is handled).
        """
        ident = frames[0]
        self.peer_key = key
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
            if self._bad_log.allow(("handler", msg.TYPE)):  # our bug; one trace per period
                logger.exception("handler for {} from {} failed", msg.TYPE, peer_name(ident)[:64])

    def bad(self, ident: bytes, why: str, body: bytes) -> None:
        """Count and log a message that was refused (one line per peer and period)."""
        self.counters["bad_messages"] += 1
        if not self._bad_log.allow(ident):
            return
        logger.warning(
            "bad message from {}: {} (first bytes {!r})",
            peer_name(ident)[:64],
            why[:300],
            body[:32],
        )
