"""The manager's sockets: a ROUTER for directed traffic and a PUB for broadcasts.

The one module of the manager process that touches ZeroMQ.  ``Endpoint``
drives it through four calls (receive, send to one peer, publish, close), so
tests can put an in-memory transport in its place.

No ``ROUTER_HANDOVER``: a connection presenting an identity that is already
connected is ignored by ZeroMQ, so nobody can take over a live peer's route.
Peers therefore use a new identity for every connection (the Python worker:
``<agent id>@<random hex>``).  With CURVE (``curve``) both sockets are CURVE
servers and every received message carries the key that sent it.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import zmq
import zmq.asyncio
from loguru import logger

from manager.auth import PUB_DOMAIN, ROUTER_DOMAIN, CurveServer
from manager.endpoint import Batch, Delivery
from runtime.sockets import bind, configure, drain, port_of

#: Attempts (20 ms apart) to bind the PUB's port again after closing it.
RENEW_TRIES = 100


class ZmqRouter:
    """ROUTER + PUB, bound on ``open()``; sends never wait."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        pub_port: int,
        max_bytes: int,
        curve: CurveServer | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.pub_port = pub_port
        self.max_bytes = max_bytes
        self.curve = curve
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
        self._router.setsockopt(zmq.ROUTER_HANDOVER, 0)  # a live route is never taken over
        self._pub = self._ctx.socket(zmq.PUB)
        configure(self._pub, self.max_bytes)
        self._pub.setsockopt(zmq.SNDHWM, 100_000)
        self._pub_now: zmq.Socket[bytes] = zmq.Socket.shadow(self._pub.underlying)
        try:
            if self.curve is not None:
                self.curve.start(self._ctx)  # the ZAP handler first: then the sockets
                self.curve.serve(self._router, ROUTER_DOMAIN)
                self.curve.serve(self._pub, PUB_DOMAIN)
            self.endpoint = bind(self._router, self.host, self.port)
            self.pub_endpoint = bind(self._pub, self.host, self.pub_port)
        except (zmq.ZMQError, ValueError):
            self.close()
            raise

    @property
    def is_open(self) -> bool:
        return self._router is not None

    async def recv_batch(self, most: int) -> Batch:
        """Wait for a message; return it with up to ``most - 1`` more already waiting,
        and with CURVE the key of each (ZeroMQ's ``User-Id``, from ZAP)."""
        assert self._router is not None
        if self.curve is None:
            first = await self._router.recv_multipart()
            return [first, *drain(self._router, most - 1)], None
        frames = [await self._router.recv_multipart(copy=False)]
        frames += drain_frames(self._router, most - 1)
        return [[f.bytes for f in message] for message in frames], [_key(m) for m in frames]

    def send(self, ident: bytes, body: bytes) -> Delivery:
        """Send now if the peer's queue has room; never wait."""
        if self._router is None:
            return Delivery.GONE
        fut = cast("asyncio.Future[Any]", self._router.send_multipart([ident, body], zmq.NOBLOCK))
        if not fut.done():  # queued behind an earlier send by pyzmq: it goes out in order
            fut.add_done_callback(_retrieve)
            return Delivery.SENT
        exc = fut.exception()
        if exc is None:
            return Delivery.SENT
        if isinstance(exc, zmq.Again):
            return Delivery.FULL
        logger.debug("cannot send to {}: {!r}", ident[:64], exc)
        return Delivery.GONE

    async def publish(self, body: bytes) -> None:
        if self._pub is None:
            return
        try:  # the plain send costs a microsecond, pyzmq's asyncio one tens
            self._pub_now.send(body, zmq.NOBLOCK)
        except zmq.Again:  # at the high-water mark: wait for room like any send
            await self._pub.send(body)

    async def renew_pub(self) -> bool:
        """Close the PUB and bind a new one on the same port (subscribers reconnect by
        themselves; with CURVE each is authenticated again).  Broadcasts published
        meanwhile are lost, as broadcasts may be (sequence numbers show the gap)."""
        if self._ctx is None or not self.pub_endpoint:
            return True
        port = port_of(self.pub_endpoint)
        if self.curve is not None:
            self.curve.unserve(PUB_DOMAIN)
        if self._pub is not None:
            self._pub.close(linger=0)
            self._pub = None
        pub = self._ctx.socket(zmq.PUB)
        configure(pub, self.max_bytes)
        pub.setsockopt(zmq.SNDHWM, 100_000)
        if self.curve is not None:
            self.curve.serve(pub, PUB_DOMAIN)
        for attempt in range(RENEW_TRIES):  # the old listener closes asynchronously
            try:
                bind(pub, self.host, port)
                break
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or attempt == RENEW_TRIES - 1:
                    logger.error("cannot re-open the PUB on port {}: {}", port, exc)
                    if self.curve is not None:
                        self.curve.unserve(PUB_DOMAIN)
                    pub.close(linger=0)
                    return False
                await asyncio.sleep(0.02)
        self._pub = pub
        self._pub_now = zmq.Socket.shadow(pub.underlying)
        logger.info("PUB re-opened on {}: every subscriber authenticates again", self.pub_endpoint)
        return True

    def close(self) -> None:
        if self.curve is not None:
            self.curve.stop()
        if self._router is not None:
            self._router.close(linger=200)  # let the goodbyes go out
        if self._pub is not None:
            self._pub.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
        self._router = self._pub = self._ctx = None


def _key(frames: list[zmq.Frame]) -> str:
    """The CURVE key ZAP gave the connection a message came on (ZeroMQ's ``User-Id``)."""
    key = frames[-1].get("User-Id")
    return key if isinstance(key, str) else ""


def drain_frames(sock: zmq.asyncio.Socket, most: int) -> list[list[zmq.Frame]]:
    """``runtime.sockets.drain`` keeping ZeroMQ frames (their properties: ``User-Id``)."""
    shadow: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
    out: list[list[zmq.Frame]] = []
    try:
        while len(out) < most:
            out.append(shadow.recv_multipart(zmq.NOBLOCK, copy=False))
    except zmq.Again:
        pass
    return out


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
