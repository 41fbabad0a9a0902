"""``taskmesh worker`` (also ``python -m worker``)."""

from __future__ import annotations

import asyncio
import socket

import click

from worker.agent import WorkerRefused
from worker.config import WorkerConfig
from worker.options import common_options, configure_logging, heartbeat_options, opt


@click.command("worker")
@opt(
    "--name",
    default=None,
    envvar="TASKMESH_NAME",
    show_envvar=True,
    help="Display name (default: the host name; in a container, its id).",
)
@opt(
    "--skill",
    type=click.IntRange(0, 10),
    required=True,
    help="Skill level 0-10; tasks of higher difficulty fail.",
)
@opt(
    "--capacity",
    type=click.IntRange(1, 10_000),
    default=1,
    help="Tasks run at the same time.",
)
@opt(
    "--time-scale",
    type=click.FloatRange(0, 3600),
    default=1.0,
    help="Seconds per difficulty point for 'simulate' tasks.",
)
@opt(
    "--handlers",
    "handler_specs",
    multiple=True,
    help="module[:attr] with a dict of kind -> function to register (repeatable).",
)
@opt(
    "--process-kind",
    "process_kinds",
    multiple=True,
    envvar="TASKMESH_PROCESS_KINDS",
    help="Run tasks of this kind each in its own process (CPU-bound; killable). Repeatable.",
)
@opt(
    "--id",
    "agent_id",
    default="",
    envvar="TASKMESH_WORKER_ID",
    help="Stable agent id (default: name plus a random suffix).",
)
@opt(
    "--grace",
    type=click.FloatRange(0, 3600),
    default=30.0,
    help="On SIGTERM, seconds to finish running tasks before cancelling them.",
)
@heartbeat_options
@common_options
def worker_command(
    name: str | None,
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
        name=name or socket.gethostname(),
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
