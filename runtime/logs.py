"""Logging set-up for every taskmesh command: the only place sinks are configured.

Text lines carry the date, the time to the millisecond, the level, the
agent's name (the process id is 1 in every container, the name is not) and
the module; ``json`` writes loguru's serialized records, one JSON object a
line, with the same fields and the bound ids in ``record.extra``: ``agent``
always; ``task`` (its id) on the lines about one task, ``worker`` (its name)
on those about one worker (joining, leaving, draining, the tasks it ran),
passed as keyword arguments of the logging call so that a log pipeline can
filter on them.
"""

from __future__ import annotations

import sys

from loguru import logger

LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")

TEXT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {extra[agent]} {name}: {message}"


def configure_logging(level: str, fmt: str = "text", agent: str = "") -> None:
    """stderr at ``level`` and above, as ``text`` lines or ``json`` records."""
    logger.remove()
    logger.configure(extra={"agent": agent or "-"})
    logger.add(
        sys.stderr,
        level=level.upper(),
        format=TEXT,
        serialize=fmt == "json",
        backtrace=False,  # our own bugs get a plain traceback, never variable values
        diagnose=False,
    )
