"""The manager's HTTP port (``--metrics-port``): Prometheus metrics and a live status page.

- ``GET /metrics``: Prometheus text exposition (``manager.metrics``);
- ``GET /``: the status page, one static HTML file with its script inline,
  no build step and nothing fetched from elsewhere;
- ``GET /status.json``: the status, the same document as ``taskmesh status
  --json`` (``taskmesh/schemas/status.json``), which the page polls;
- ``GET /history.json``: finished and failed counts once a second for the
  last ten minutes (the page's throughput chart).

Served by an asyncio server on the manager's own event loop, not a thread.
The answers are built from the manager's state, which only its loop may
touch: on the loop, each answer is a consistent snapshot with no locks,
and building one costs about as much as answering a ``status`` request
(milliseconds, independent of the number of tasks).  Nothing here waits on
a peer while holding the loop: requests are read and answers written with
a timeout, one request per connection, at most ``MAX_CLIENTS`` at once,
and a slow reader only delays itself.  Nothing is authenticated: it
listens on ``--bind`` like the manager's ROUTER, and shows what ``status``
shows (counts, worker names, running task ids), never task contents.  With
CURVE, where tasks belong to client keys, it lists no task ids at all (how
many each worker runs only): anyone who reaches the port would otherwise
see every tenant's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from loguru import logger

from manager.auth import is_loopback
from manager.metrics import Metrics
from manager.snapshot import status_reply
from protocol import StatusReply
from protocol.views import iso, status_view

if TYPE_CHECKING:
    from manager.service import TaskService

#: Seconds a client has to send its request, and to take the answer.
IO_TIMEOUT = 5.0
MAX_CLIENTS = 32
MAX_HEADER_LINES = 100
PAGE = "status_page.html"

Answer = tuple[int, str, bytes]


class HttpError(RuntimeError):
    """The HTTP port cannot be listened on (in use, bad address)."""


class StatusServer:
    def __init__(self, service: TaskService, host: str, port: int) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.metrics = Metrics(service)
        self.page = resources.files("manager").joinpath(PAGE).read_bytes()
        self._server: asyncio.Server | None = None
        self._clients = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen (``port`` 0: any free one; ``port`` is then the bound one)."""
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=8192)
        except OSError as exc:
            raise HttpError(f"cannot serve metrics on {self.host}:{self.port}: {exc}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("metrics on {}/metrics, status page on {}/", self.url, self.url)
        if not is_loopback(self.host):
            logger.warning(
                "the metrics port {} answers anyone who can reach it (no CURVE, no "
                "authentication): what 'taskmesh status' shows, never task contents "
                "(nor task ids, with CURVE)",
                self.port,
            )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= MAX_CLIENTS:
            writer.close()
            return
        self._clients += 1
        try:
            async with asyncio.timeout(IO_TIMEOUT):
                method, path = await _request(reader)
                status, kind, body = self.answer(method, path)
                head = (
                    f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                    "Connection: close\r\n\r\n"
                )
                writer.write(head.encode() + (body if method != "HEAD" else b""))
                await writer.drain()
        except (TimeoutError, ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass  # a client that does not speak HTTP, or too slowly: dropped
        finally:
            self._clients -= 1
            writer.close()

    def answer(self, method: str, path: str) -> Answer:
        """The answer to ``method path`` (on the loop: the manager's state does not move)."""
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET\n"
        route = path.split("?", 1)[0]
        if route == "/metrics":
            return 200, self.metrics.content_type, self.metrics.render()
        if route in ("/", "/index.html"):
            return 200, "text/html; charset=utf-8", self.page
        if route == "/status.json":
            return _json(status_view(self.status()))
        if route == "/history.json":
            return _json(self.history())
        return 404, "text/plain", b"not found: try / or /metrics\n"

    def status(self) -> StatusReply:
        """The status; with CURVE, without task ids (they belong to client keys)."""
        reply = status_reply(self.service)
        if self.service.admin.keyring is None:
            return reply
        workers = [dataclasses.replace(w, tasks=[]) for w in reply.workers]
        return dataclasses.replace(reply, workers=workers)

    def history(self) -> dict[str, Any]:
        samples = self.service.stats.samples
        return {
            "interval": 1.0,
            "samples": [{"time": iso(t), "done": d, "failed": f} for t, d, f in samples],
        }


async def _request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and path of an HTTP/1.x request (its headers read and ignored)."""
    line = await reader.readline()
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request")
    for _ in range(MAX_HEADER_LINES):
        if (await reader.readline()) in (b"\r\n", b"\n", b""):
            return parts[0], parts[1]
    raise ValueError("too many header lines")


def _json(value: Any) -> Answer:
    return 200, "application/json", json.dumps(value).encode()


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}
