"""Benchmarks and chaos runs against real taskmesh processes (not tests, not installed).

``bench.chaos`` kills workers and the manager while tasks flow and counts
lost or doubled tasks; ``bench.durability`` measures what the journal costs
end to end and ``bench.journal_cost`` per task in process, against bare
SQLite; ``bench.netfaults`` what partitions and drops cost a worker.
The end-to-end ones start real processes through ``taskmesh.procs`` and talks to them with
the ``Client``; run them as ``python -m bench.chaos`` / ``python -m
bench.durability`` (see bench/README.md).  ``bench/results/`` holds
published runs.

The top layer: may import every other package (``protocol``, ``runtime``,
``manager``, ``worker``, ``taskmesh``); none of them imports ``bench``.
"""
