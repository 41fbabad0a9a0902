"""Raw pyzmq baselines: what this machine does with no task manager in the way.

Three measurements that ``taskmesh bench`` compares itself against in the same run:

(a) ``dispatch_rate``: one message per task through an asyncio ROUTER to
    worker processes (DEALER), round-robin, a bounded window per worker; each
    worker answers every task with one result message; the ROUTER drains the
    replies in batches (NOBLOCK until ``Again``).  Reports tasks per second.
(b) ``round_trip``: an asyncio client (DEALER) -> broker process (ROUTER for
    clients, ROUTER for workers) -> worker process (DEALER) -> broker ->
    client, one request at a time.  Reports p50/p95/p99 in microseconds.
(c) ``pubsub_rate``: a sync PUB to subscriber processes (sync SUB); messages
    per second received by each subscriber, and how many it lost.

Every function is synchronous (it runs its own event loop), returns a plain
dict of numbers, binds only 127.0.0.1 on random ports, and kills every
process it started, also on error.  Only asyncio, zmq, msgpack and the
standard library are used, so the bench can import this without taskmesh.

Child processes are ``python -m taskmesh.bench.raw --child ROLE ...`` (``children.py``
starts and stops them); each baseline has its own module (``dispatch.py``,
``round_trip.py``, ``pubsub.py``) and ``cli.py`` runs all three.

    .venv/bin/python -m taskmesh.bench.raw [--tasks N] [--trips K] [--messages M]
                                           [--rounds R] [--json]
"""

from taskmesh.bench.raw.cli import measure_all
from taskmesh.bench.raw.dispatch import dispatch_rate
from taskmesh.bench.raw.pubsub import pubsub_rate
from taskmesh.bench.raw.round_trip import round_trip

__all__ = ["dispatch_rate", "measure_all", "pubsub_rate", "round_trip"]
