"""Garbage-collector settings for a process that allocates a few objects per task.

CPython's cyclic collector runs a young-generation pass every 700 net
allocations; at tens of thousands of tasks a second that is thousands of
passes a second over objects that are freed by reference counting anyway
(taskmesh's records hold no cycles).  A long-running agent freezes what it
set up at start (never scanned again) and collects young objects every
50,000 allocations instead.  Memory still held in cycles is freed, later.
"""

from __future__ import annotations

import gc

#: Net allocations between two young-generation collections (CPython's default is 700).
YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Call once the process has set itself up, before it starts serving."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
