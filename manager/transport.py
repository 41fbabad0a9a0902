"""The manager's sockets: a ROUTER for directed traffic and a PUB for broadcasts.

The one module of the manager process that touches ZeroMQ.  ``Endpoint``
drives it through four calls (receive, send to one peer, publish, close), so
tests can put an in-memory transport in its place.
"""

from __future__ import annotations

import zmq
import zmq.asyncio
from loguru import logger

from runtime.sockets import bind, configure, drain, send_frames


class ZmqRouter:
    """ROUTER + PUB, bound on ``open()``; sends never block longer than ``send_timeout``."""

    def __init__(
        self, *, host: str, port: int, pub_port: int, max_bytes: int, send_timeout: float
    ) -> None:
        self.host = host
        self.port = port
        self.pub_port = pub_port
        self.max_bytes = max_bytes
        self.send_timeout = send_timeout
        self.endpoint = ""
        self.pub_endpoint = ""
        self._ctx: zmq.asyncio.Context | None = None
        self._router: zmq.asyncio.Socket | None = None
        self._pub: zmq.asyncio.Socket | None = None

    def open(self) -> None:
        """Create the context and bind both sockets (synchronous, so errors surface at once)."""
        self._ctx = zmq.asyncio.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        configure(self._router, self.max_bytes)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self._pub = self._ctx.socket(zmq.PUB)
        configure(self._pub, self.max_bytes)
        self._pub.setsockopt(zmq.SNDHWM, 100_000)
        self._pub_now: zmq.Socket[bytes] = zmq.Socket.shadow(self._pub.underlying)
        try:
            self.endpoint = bind(self._router, self.host, self.port)
            self.pub_endpoint = bind(self._pub, self.host, self.pub_port)
        except (zmq.ZMQError, ValueError):
            self.close()
            raise

    @property
    def is_open(self) -> bool:
        return self._router is not None

    async def recv_batch(self, most: int) -> list[list[bytes]]:
        """Wait for a message; return it with up to ``most - 1`` more already waiting."""
        assert self._router is not None
        first = await self._router.recv_multipart()
        return [first, *drain(self._router, most - 1)]

    async def send(self, ident: bytes, body: bytes) -> bool:
        """``False`` when ZeroMQ cannot route to ``ident`` or it takes nothing in time."""
        if self._router is None:
            return False
        try:
            await send_frames(self._router, [ident, body], self.send_timeout)
        except (zmq.ZMQError, TimeoutError) as exc:
            logger.debug("cannot send to {}: {!r}", ident[:64], exc)
            return False
        return True

    async def publish(self, body: bytes) -> None:
        if self._pub is None:
            return
        try:  # the plain send costs a microsecond, pyzmq's asyncio one tens
            self._pub_now.send(body, zmq.NOBLOCK)
        except zmq.Again:  # at the high-water mark: wait for room like any send
            await self._pub.send(body)

    def close(self) -> None:
        if self._router is not None:
            self._router.close(linger=200)  # let the goodbyes go out
        if self._pub is not None:
            self._pub.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
        self._router = self._pub = self._ctx = None
