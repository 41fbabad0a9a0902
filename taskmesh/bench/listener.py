"""A Ceylon-style worker that counts broadcasts (``taskmesh bench --broadcast``).

    python -m taskmesh.bench.listener PORT NAME

On the broadcast ``b"count?"`` it tells the admin, with ``send_direct``:
``b"count:<name>:<received>:<first ns>:<last ns>:<missed>"`` (monotonic
nanoseconds of the first and last message counted).
"""

from __future__ import annotations

import asyncio
import sys
import time

from worker import Worker


class Listener(Worker):
    received = 0
    first = 0
    last = 0

    async def on_message(self, agent_id: str, data: bytes, time_: int) -> None:
        if data == b"count?":
            report = b"count:%s:%d:%d:%d:%d" % (
                self.name.encode(),
                self.received,
                self.first,
                self.last,
                self.gaps.missed,
            )
            await self.send_direct(agent_id, report)
            return
        now = time.monotonic_ns()
        if not self.received:
            self.first = now
        self.received += 1
        self.last = now


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    asyncio.run(Listener(name, admin_port=port, heartbeat_interval=0.2).arun_worker(b""))


if __name__ == "__main__":
    main()
