"""Why a connection to the manager failed: ZeroMQ's handshake events, in words.

A refused CURVE handshake is silent at the socket level (messages simply
never leave), so a worker or client watches its socket's monitor and turns
the failure into a message that names the likely cause.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

EVENTS = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def explain(event: int, value: int, curve: bool) -> str:
    """One line about a failed handshake, from this side's point of view."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return f"the manager refused this key (ZAP status {value}): it is not listed for this role"
    if not curve:
        return "the handshake failed: the manager may require CURVE (--secret-key, --manager-key)"
    return (
        "the CURVE handshake failed: is --manager-key the manager's public key, "
        "and does the manager use CURVE?"
    )


class HandshakeWatch:
    """Reports failed handshakes of ``sock`` to ``report`` (until ``close``)."""

    def __init__(
        self, sock: zmq.asyncio.Socket, curve: bool, report: Callable[[str], None]
    ) -> None:
        self._monitor = sock.get_monitor_socket(EVENTS)
        self._curve = curve
        self._report = report
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        with contextlib.suppress(zmq.ZMQError, asyncio.CancelledError):
            while True:
                event = parse_monitor_message(await self._monitor.recv_multipart())
                self._report(explain(int(event["event"]), int(event["value"]), self._curve))

    def close(self) -> None:
        """Stop, and close the monitor socket (before the context ends)."""
        if self._task is not None:
            self._task.cancel()
        self._monitor.close(linger=0)
