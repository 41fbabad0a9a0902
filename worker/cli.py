"""``taskmesh worker`` (also ``python -m worker``), and the options every command shares."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from loguru import logger

from protocol import DEFAULT_PORT, DEFAULT_WORKSPACE_ID, HEARTBEAT_INTERVAL, LIVENESS
from worker.agent import WorkerRefused
from worker.config import WorkerConfig

F = TypeVar("F", bound=Callable[..., Any])

LEVELS = click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)


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
    fn = click.option(
        "--log-level",
        type=LEVELS,
        default="INFO",
        show_default=True,
        envvar="TASKMESH_LOG_LEVEL",
        show_envvar=True,
        help="Log verbosity (stderr).",
    )(fn)
    fn = click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=DEFAULT_PORT,
        show_default=True,
        envvar="TASKMESH_PORT",
        show_envvar=True,
        help="The manager's ROUTER port.",
    )(fn)
    fn = click.option(
        "--host",
        default="127.0.0.1",
        show_default=True,
        envvar="TASKMESH_HOST",
        show_envvar=True,
        help="The manager's address (for the manager: the address to bind).",
    )(fn)
    return fn


def heartbeat_options(fn: F) -> F:
    fn = click.option(
        "--liveness",
        type=click.IntRange(1, 100),
        default=LIVENESS,
        show_default=True,
        envvar="TASKMESH_LIVENESS",
        show_envvar=True,
        help="Missed heartbeats before a peer counts as lost.",
    )(fn)
    fn = click.option(
        "--heartbeat-interval",
        type=click.FloatRange(0.01, 60),
        default=HEARTBEAT_INTERVAL,
        show_default=True,
        envvar="TASKMESH_HEARTBEAT_INTERVAL",
        show_envvar=True,
        help="Seconds between heartbeats.",
    )(fn)
    fn = click.option(
        "--workspace",
        default=DEFAULT_WORKSPACE_ID,
        show_default=True,
        envvar="TASKMESH_WORKSPACE",
        show_envvar=True,
        help="Workspace id (must match the manager's).",
    )(fn)
    return fn


@click.command("worker")
@click.option(
    "--name", required=True, envvar="TASKMESH_NAME", show_envvar=True, help="Display name."
)
@click.option(
    "--skill",
    type=click.IntRange(0, 10),
    required=True,
    envvar="TASKMESH_SKILL",
    show_envvar=True,
    help="Skill level 0-10; tasks of higher difficulty fail.",
)
@click.option(
    "--capacity",
    type=click.IntRange(1, 10_000),
    default=1,
    show_default=True,
    envvar="TASKMESH_CAPACITY",
    show_envvar=True,
    help="Tasks run at the same time.",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(0, 3600),
    default=1.0,
    show_default=True,
    envvar="TASKMESH_TIME_SCALE",
    show_envvar=True,
    help="Seconds per difficulty point for 'simulate' tasks.",
)
@click.option(
    "--handlers",
    "handler_specs",
    multiple=True,
    envvar="TASKMESH_HANDLERS",
    show_envvar=True,
    help="module[:attr] with a dict of kind -> function to register (repeatable).",
)
@click.option(
    "--process-kind",
    "process_kinds",
    multiple=True,
    envvar="TASKMESH_PROCESS_KINDS",
    show_envvar=True,
    help="Run tasks of this kind each in its own process (CPU-bound; killable). Repeatable.",
)
@click.option(
    "--id",
    "agent_id",
    default="",
    envvar="TASKMESH_WORKER_ID",
    show_envvar=True,
    help="Stable agent id (default: name plus a random suffix).",
)
@click.option(
    "--grace",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    envvar="TASKMESH_GRACE",
    show_envvar=True,
    help="On SIGTERM, seconds to finish running tasks before cancelling them.",
)
@heartbeat_options
@common_options
def worker_command(
    name: str,
    skill: int,
    capacity: int,
    time_scale: float,
    handler_specs: tuple[str, ...],
    process_kinds: tuple[str, ...],
    agent_id: str,
    grace: float,
    workspace: str,
    heartbeat_interval: float,
    liveness: int,
    host: str,
    port: int,
    log_level: str,
) -> None:
    """Run a worker that connects to the manager at HOST:PORT and runs tasks."""
    configure_logging(log_level)
    from worker.server import serve  # after logging is set up

    cfg = WorkerConfig(
        name=name,
        skill=skill,
        capacity=capacity,
        host=host,
        port=port,
        workspace=workspace,
        agent_id=agent_id,
        time_scale=time_scale,
        handlers=handler_specs,
        process_kinds=process_kinds,
        heartbeat_interval=heartbeat_interval,
        liveness=liveness,
        grace=grace,
    )
    try:
        asyncio.run(serve(cfg))
    except (ImportError, ValueError) as exc:
        raise click.ClickException(f"cannot load handlers: {exc}") from None
    except WorkerRefused as exc:
        raise click.ClickException(f"the manager refused this worker: {exc}") from None


def main() -> None:
    worker_command(prog_name="python -m worker")
