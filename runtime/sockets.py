"""Socket set-up shared by every process: one place for options and endpoints."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import zmq
import zmq.asyncio

from protocol import MAX_MESSAGE_BYTES

WILDCARDS = {"*", "0.0.0.0", "::", "[::]"}


def tcp(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


def bind(sock: zmq.asyncio.Socket, host: str, port: int) -> str:
    """Bind to ``host:port`` (port 0: a free port) and return the endpoint actually bound."""
    check_port(port)
    addr = "*" if host in WILDCARDS else host
    if port == 0:
        port = sock.bind_to_random_port(f"tcp://{addr}")
    else:
        sock.bind(tcp(addr, port))
    return tcp(host, port)


def port_of(endpoint: str) -> int:
    """The port of a ``tcp://host:port`` endpoint."""
    return int(endpoint.rsplit(":", 1)[1])


def reachable(endpoint: str, via_host: str) -> str:
    """The manager's advertised endpoint as a peer reaching it through ``via_host`` sees it."""
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    return tcp(via_host, int(port)) if host in WILDCARDS else endpoint


async def send_frames(sock: zmq.asyncio.Socket, frames: list[bytes], timeout: float) -> None:
    """Send now if the socket can take it, else wait at most ``timeout`` seconds.

    Raises ``TimeoutError`` (the peer is not taking messages: gone, or its
    queue is full) or ``zmq.ZMQError`` (unroutable); never blocks forever.
    """
    fut = cast("asyncio.Future[Any]", sock.send_multipart(frames, flags=zmq.NOBLOCK))
    if fut.done():
        exc = fut.exception()
        if exc is None:
            return
        if not isinstance(exc, zmq.Again):
            raise exc
    else:
        fut.add_done_callback(_retrieve)
        return  # queued by pyzmq behind earlier sends: it goes out in order
    async with asyncio.timeout(timeout):
        await sock.send_multipart(frames)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def check_port(port: int) -> None:
    """libzmq wraps out-of-range ports silently; refuse them instead."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")


def configure(sock: zmq.asyncio.Socket, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    # Room for the frame header around the largest message the codec accepts.
    sock.setsockopt(zmq.MAXMSGSIZE, max_bytes + 1024)


def drain(sock: zmq.asyncio.Socket, most: int) -> list[list[bytes]]:
    """Up to ``most`` more messages already waiting on ``sock``, read without waiting.

    Read through the socket's synchronous shadow: pyzmq's asyncio receive
    costs tens of microseconds a message, the plain one about one.  Reading
    until ``Again`` leaves the socket as an awaited receive would, so the
    next ``await sock.recv_multipart()`` wakes for what comes later.
    """
    shadow: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
    out: list[list[bytes]] = []
    try:
        while len(out) < most:
            out.append(shadow.recv_multipart(zmq.NOBLOCK))
    except zmq.Again:
        pass
    return out


def drain_bodies(sock: zmq.asyncio.Socket, most: int) -> list[bytes]:
    """``drain`` for a socket whose messages are one frame each (a SUB): the bodies.

    A message of several frames comes out as several bodies (the receiver's
    decoder refuses what is not a whole message).
    """
    shadow: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
    out: list[bytes] = []
    try:
        while len(out) < most:
            out.append(shadow.recv(zmq.NOBLOCK))
    except zmq.Again:
        pass
    return out


def liveness_options(
    sock: zmq.asyncio.Socket, interval: float, liveness: int, *, ttl: bool = True
) -> None:
    """Bounded reconnects and ZMTP heartbeats on a connecting socket (seconds in, ms set).

    A connection that stalls without closing (packets dropped: TCP neither
    fails nor delivers for minutes) is closed after ``liveness + 1`` silent
    heartbeat intervals, one beyond the application's own window, so the
    agent notices first; ``ttl`` asks the bound end to close its half too.
    Reconnecting then starts at once and never waits longer than one
    interval between attempts, and a connect attempt (a SYN lost in the
    partition) is abandoned after an interval (at least 0.2 s) instead of
    following the kernel's SYN back-off.  Keep the interval well above the
    round-trip time.
    """
    ivl = max(round(interval * 1000), 10)
    silent = ivl * (liveness + 1)
    sock.setsockopt(zmq.RECONNECT_IVL, min(100, ivl))
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, ivl)
    sock.setsockopt(zmq.CONNECT_TIMEOUT, max(ivl, 200))
    sock.setsockopt(zmq.HEARTBEAT_IVL, ivl)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, silent)
    if ttl:
        sock.setsockopt(zmq.HEARTBEAT_TTL, min(silent, 6_553_500))  # 0.1 s steps, at most this
