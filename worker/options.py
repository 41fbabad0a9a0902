"""Command-line plumbing every taskmesh command shares: options, logging."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from loguru import logger

from protocol import DEFAULT_PORT, DEFAULT_WORKSPACE_ID, HEARTBEAT_INTERVAL, LIVENESS

F = TypeVar("F", bound=Callable[..., Any])

LEVELS = click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)


def opt(*decls: str, **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` that also reads ``TASKMESH_<NAME>`` and shows it and the default."""
    name = next(d for d in decls if d.startswith("--")).lstrip("-").split("/")[0]
    kwargs.setdefault("envvar", "TASKMESH_" + name.upper().replace("-", "_"))
    kwargs.setdefault("show_envvar", True)
    if "default" in kwargs and not kwargs.get("is_flag"):
        kwargs.setdefault("show_default", True)
    return click.option(*decls, **kwargs)


def configure_logging(level: str) -> None:
    """The only place sinks are set up: stderr, one line per record."""
    logger.remove()
    logger.add(
        sys.stderr,
        level=level.upper(),
        format="{time:HH:mm:ss.SSS} {level: <7} {process} {name}: {message}",
    )


def common_options(fn: F) -> F:
    """``--host``/``--port``/``--log-level``, also from TASKMESH_HOST, _PORT, _LOG_LEVEL."""
    fn = opt("--log-level", type=LEVELS, default="INFO", help="Log verbosity (stderr).")(fn)
    fn = opt(
        "--port",
        type=click.IntRange(0, 65535),
        default=DEFAULT_PORT,
        help="The manager's ROUTER port.",
    )(fn)
    return opt(
        "--host",
        default="127.0.0.1",
        help="The manager's address (for the manager: the address to bind).",
    )(fn)


def heartbeat_options(fn: F) -> F:
    fn = opt(
        "--liveness",
        type=click.IntRange(1, 100),
        default=LIVENESS,
        help="Missed heartbeats before a peer counts as lost.",
    )(fn)
    fn = opt(
        "--heartbeat-interval",
        type=click.FloatRange(0.01, 60),
        default=HEARTBEAT_INTERVAL,
        help="Seconds between heartbeats.",
    )(fn)
    return opt(
        "--workspace",
        default=DEFAULT_WORKSPACE_ID,
        help="Workspace id (must match the manager's).",
    )(fn)
