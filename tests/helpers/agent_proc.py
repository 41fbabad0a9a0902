"""A Ceylon-style agent in its own process, for the agent-layer tests.

It reports everything it receives to the admin with ``send_direct``, so the
test (running the admin) can see what reached whom:
- any direct message ``b"ping"``: reply ``b"pong:<name>"``;
- any broadcast from the admin: reply ``b"heard:<name>:<data>:<time>"``;
- direct ``b"shout"``: broadcast ``b"shout-from:<name>"``;
- a broadcast from another agent: tell the admin ``b"relay:<name>:<data>"``;
- broadcasts ``b"burst..."`` are only counted; the broadcast ``b"count?"`` (sent
  after a burst, on the same channel) is answered ``b"count:<name>:<got>:<missed>"``.
"""

from __future__ import annotations

import asyncio
import sys

from loguru import logger

from worker import Worker


class Probe(Worker):
    burst = 0

    async def on_message(self, agent_id: str, data: bytes, time: int) -> None:
        admin = self.manager_id
        name = self.name.encode()
        if data.startswith(b"burst"):
            self.burst += 1
        elif data == b"count?":
            await self.send_direct(admin, b"count:%s:%d:%d" % (name, self.burst, self.gaps.missed))
        elif data == b"ping":
            await self.send_direct(agent_id, b"pong:" + name)
        elif data == b"shout":
            await self.broadcast(b"shout-from:" + name)
        elif agent_id == admin:
            await self.send_direct(admin, b"heard:%s:%s:%d" % (name, data, time))
        else:
            await self.send_direct(admin, b"relay:%s:%s" % (name, data))


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    logger.remove()
    logger.add(sys.stderr, level="DEBUG")
    agent = Probe(name, admin_port=port, heartbeat_interval=0.1)
    asyncio.run(agent.arun_worker(b""))


if __name__ == "__main__":
    main()
