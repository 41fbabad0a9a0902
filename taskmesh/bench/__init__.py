"""``taskmesh bench``: load experiments against taskmesh, beside raw pyzmq baselines.

Each run measures, in the same invocation, what the machine does with no
task manager in the way (``taskmesh.bench.raw``: one message per task
through an asyncio ROUTER, a client-broker-worker round trip, PUB/SUB) and
what taskmesh does with the same load (``load``: throughput, single-task
round trips, CPU per task per process, memory), and prints taskmesh's ratio
to each baseline.  Imported only by the command.
"""
