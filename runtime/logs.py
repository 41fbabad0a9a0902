"""Logging set-up for every taskmesh command: the only place sinks are configured."""

from __future__ import annotations

import sys

from loguru import logger

LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")


def configure_logging(level: str) -> None:
    """stderr, one line per record, at ``level`` and above."""
    logger.remove()
    logger.add(
        sys.stderr,
        level=level.upper(),
        format="{time:HH:mm:ss.SSS} {level: <7} {process} {name}: {message}",
        backtrace=False,  # our own bugs get a plain traceback, never variable values
        diagnose=False,
    )
