"""A client's connection to the manager: one DEALER, requests matched to replies by ``req``.

Any number of coroutines may ``request`` at once: a single receiver task
reads the socket, hands each reply to the request with its ``req``, and
each ``finished`` push to ``on_push``.  A failed CURVE handshake fails
what waits at once, with the reason (``refusal``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable
from typing import TypeVar

import zmq
import zmq.asyncio

from protocol import (
    HEARTBEAT_INTERVAL,
    LIVENESS,
    Error,
    Finished,
    Message,
    ProtocolError,
    decode,
    encode,
)
from runtime.handshake import HandshakeWatch
from runtime.keys import CurveClient
from runtime.sockets import configure, liveness_options, tcp
from taskmesh.errors import ManagerError, ManagerUnavailable

R = TypeVar("R", bound=Message)


class Connection:
    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        max_message_bytes: int,
        curve: CurveClient | None,
        on_push: Callable[[Finished], None],
    ) -> None:
        self.endpoint = tcp(host, port)
        self.timeout = timeout
        self.max_bytes = max_message_bytes
        self.reqs = itertools.count(1)  # request ids, per connection
        self._on_push = on_push
        self._ctx = zmq.asyncio.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        configure(self._sock, max_message_bytes)
        # Reconnect within a second of a manager coming back, and drop a stalled
        # connection instead of waiting on TCP's retransmission back-off.
        liveness_options(self._sock, HEARTBEAT_INTERVAL, LIVENESS, ttl=False)
        if curve is not None:  # CURVE: this client's key, and the manager's it trusts
            curve.apply(self._sock)
        self._sock.setsockopt(zmq.IDENTITY, f"client-{uuid.uuid4().hex[:12]}".encode())
        #: Why the last handshake with the manager failed ("" once it answers).
        self.refusal = ""
        self._handshake = HandshakeWatch(self._sock, curve is not None, self._refused)
        self._sock.connect(self.endpoint)
        self._replies: dict[int, asyncio.Future[Message]] = {}
        self._receiver: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
        self.close()

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
        self._handshake.close()
        self._sock.close(linger=0)
        self._ctx.term()

    async def request(self, msg: Message, reply_type: type[R], timeout: float | None = None) -> R:
        """Send ``msg`` and wait for the reply carrying its ``req``."""
        req: int = getattr(msg, "req", 0)
        return await self.exchange(req, encode(msg, self.max_bytes), msg.TYPE, reply_type, timeout)

    async def exchange(
        self, req: int, data: bytes, kind: str, reply_type: type[R], timeout: float | None = None
    ) -> R:
        """Send the encoded request ``data`` (carrying ``req``); wait for its reply."""
        if self._receiver is None:
            self._receiver = asyncio.get_running_loop().create_task(self._receive())
            self._handshake.start()
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[req] = future
        try:
            async with asyncio.timeout(timeout or self.timeout):
                await self._sock.send(data)  # no connection: waits
                reply = await future
        except TimeoutError:
            if self.refusal:
                raise ManagerError("handshake", self.refusal) from None
            raise ManagerUnavailable(f"no reply from the manager at {self.endpoint}") from None
        finally:
            self._replies.pop(req, None)
        if isinstance(reply, Error):
            raise ManagerError(reply.code, reply.message)
        if not isinstance(reply, reply_type):
            raise ManagerError("unexpected", f"{reply.TYPE} in answer to {kind}")
        return reply

    async def _receive(self) -> None:
        """The one reader of the socket: replies to their requests, pushes to ``on_push``."""
        while True:
            try:
                reply = decode(await self._sock.recv(), self.max_bytes)
            except ProtocolError:
                continue
            except zmq.ZMQError:
                return  # closed
            self.refusal = ""
            if isinstance(reply, Finished):
                self._on_push(reply)
                continue
            req = getattr(reply, "req", 0)
            future = self._replies.get(req)
            if future is not None and not future.done():
                future.set_result(reply)

    def _refused(self, why: str) -> None:
        """A handshake failed: what waits for a reply fails now, with the reason."""
        self.refusal = why
        for future in self._replies.values():
            if not future.done():
                future.set_exception(ManagerError("handshake", why))
