"""Ceylon's ``broadcast`` under load: an in-process ``Admin`` to listener processes.

The admin broadcasts ``messages`` payloads as fast as ``broadcast`` returns,
then asks every listener how many it received and over how long (their
``on_message`` counts them); the rate is what one worker's callback sees.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from manager import Admin
from protocol import AgentDetail
from taskmesh.procs import Proc, spawn


class _Counter(Admin):
    def __init__(self) -> None:
        super().__init__("bench-admin", port=0, heartbeat_interval=0.2, liveness=5)
        self.joined: asyncio.Queue[AgentDetail] = asyncio.Queue()
        self.reports: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_agent_connected(self, topic: str, agent: AgentDetail) -> None:
        await self.joined.put(agent)

    async def on_message(self, agent_id: str, data: bytes, time: int) -> None:
        if data.startswith(b"count:"):
            await self.reports.put(data)


async def _run(listeners: int, messages: int, size: int, logs: Path) -> dict[str, Any]:
    admin = _Counter()
    admin.open()
    serving = asyncio.ensure_future(admin.arun_admin(b""))
    procs: list[Proc] = []
    try:
        port = admin.address.rsplit(":", 1)[1]
        for n in range(listeners):
            procs.append(spawn(f"l{n}", "taskmesh.bench.listener", [port, f"l{n}"], logs))
        for _ in range(listeners):
            await asyncio.wait_for(admin.joined.get(), 60)
        payload = b"x" * size
        started = time.perf_counter()
        for _ in range(messages):
            await admin.broadcast(payload)
        sent = time.perf_counter() - started
        await asyncio.sleep(0.5)
        await admin.broadcast(b"count?")
        rates, lost = [], 0
        for _ in range(listeners):
            report = (await asyncio.wait_for(admin.reports.get(), 60)).split(b":")
            received, first, last = (int(x) for x in report[2:5])
            rates.append(received / max((last - first) / 1e9, 1e-9))
            lost += messages - received
        return {
            "messages": messages,
            "listeners": listeners,
            "sent_per_s": messages / sent,
            "received_per_s": min(rates),
            "lost": lost,
        }
    finally:
        await admin.stop()
        await asyncio.wait_for(serving, 10)
        for proc in procs:
            proc.stop()


def broadcast_rate(listeners: int = 2, messages: int = 100_000, size: int = 16) -> dict[str, Any]:
    """What each listener's ``on_message`` receives per second (the slowest one), and loss."""
    with tempfile.TemporaryDirectory(prefix="taskmesh-bcast-") as tmp:
        return asyncio.run(_run(listeners, messages, size, Path(tmp)))


if __name__ == "__main__":  # pragma: no cover - manual use
    sys.stdout.write(f"{broadcast_rate()}\n")
