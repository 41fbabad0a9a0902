"""The ``taskmesh`` command: one subcommand per process and operator action.

Parsing only: each command turns its options into a config or a request and
hands it to the module that does the work.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

import click
import zmq

from manager.client import Client, ManagerError, ManagerUnavailable
from manager.config import ManagerConfig
from manager.report import results_table, status_table, to_json
from manager.scheduler import POLICIES
from manager.taskfile import TaskFileError, parse_tasks
from worker.cli import worker_command
from worker.options import common_options, configure_logging, heartbeat_options, opt

T = TypeVar("T")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taskmesh")
def main() -> None:
    """taskmesh: distributed tasks over ZeroMQ, assigned by skill, never lost."""


main.add_command(worker_command)


@main.command("manager")
@opt(
    "--name",
    default="manager",
    show_default=True,
    envvar="TASKMESH_NAME",
    show_envvar=True,
)
@opt(
    "--bind",
    default=None,
    help="Address to bind (default: --host). The image sets 0.0.0.0.",
)
@opt(
    "--pub-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="PUB port (0: any free port).",
)
@opt(
    "--policy",
    type=click.Choice(sorted(POLICIES)),
    default="best-fit",
    help="How a worker is chosen for a task.",
)
@opt(
    "--unmatched",
    type=click.Choice(["wait", "strongest"]),
    default="wait",
    help="A task no connected worker is skilled for: wait for one, or run it on the strongest.",
)
@opt(
    "--expect-workers",
    type=click.IntRange(0, 100_000),
    default=0,
    help="Start assigning once this many workers are connected.",
)
@opt(
    "--max-attempts",
    type=click.IntRange(1, 100),
    default=3,
    help="Give a task up after losing its worker this many times.",
)
@opt(
    "--db",
    default="taskmesh.db",
    help="SQLite journal path (':memory:' for none).",
)
@opt(
    "--fsync/--no-fsync",
    default=False,
    help="fsync every journal commit (survives power loss, not just kills).",
)
@opt(
    "--max-queued",
    type=click.IntRange(1),
    default=1_000_000,
    help="Refuse submissions ('busy') beyond this many queued tasks.",
)
@opt(
    "--ready-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the bound endpoints here as JSON once listening.",
)
@heartbeat_options
@common_options
def manager_command(
    name: str,
    bind: str | None,
    pub_port: int,
    policy: str,
    unmatched: str,
    expect_workers: int,
    max_attempts: int,
    db: str,
    fsync: bool,
    max_queued: int,
    ready_file: str | None,
    workspace: str,
    heartbeat_interval: float,
    liveness: int,
    host: str,
    port: int,
    log_level: str,
) -> None:
    """Run the manager: bind HOST:PORT and hand tasks to workers."""
    configure_logging(log_level)
    from manager.server import serve

    host = bind or host
    cfg = ManagerConfig(
        host=host,
        port=port,
        pub_port=pub_port,
        name=name,
        workspace=workspace,
        policy=policy,
        unmatched=unmatched,
        expect_workers=expect_workers,
        max_attempts=max_attempts,
        heartbeat_interval=heartbeat_interval,
        liveness=liveness,
        db=db,
        fsync=fsync,
        max_queued=max_queued,
        ready_file=ready_file,
    )
    try:
        asyncio.run(serve(cfg))
    except zmq.ZMQError as exc:  # address in use, bad host
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None


@main.command("submit")
@click.argument("file", type=click.File("r"))
@click.option("--wait", "wait_", is_flag=True, help="Wait until every task has its final result.")
@click.option(
    "--timeout", type=click.FloatRange(0), default=None, help="Give up waiting after this."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@common_options
def submit_command(
    file: Any,
    wait_: bool,
    timeout: float | None,
    as_json: bool,
    host: str,
    port: int,
    log_level: str,
) -> None:
    """Submit the tasks in FILE (a JSON list; '-' reads stdin)."""
    configure_logging(log_level)
    try:
        specs = parse_tasks(file.read(), file.name)
    except TaskFileError as exc:
        raise click.ClickException(str(exc)) from None

    async def go() -> None:
        async with Client(host, port) as client:
            reply = await client.submit(specs)
            if not wait_:
                out = {"accepted": reply.accepted, "known": [s.id for s in reply.known]}
                click.echo(to_json(out) if as_json else _submitted(len(reply.accepted), out))
                return
            states = await client.wait(
                [s.id for s in specs], timeout=timeout, progress=None if as_json else _progress
            )
            click.echo(to_json(states) if as_json else results_table(states))

    _run(go())


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option(
    "--check",
    is_flag=True,
    help="Print one line; exit 1 unless the manager answers with --min-workers connected.",
)
@click.option(
    "--min-workers",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="Connected workers --check requires.",
)
@common_options
def status_command(
    as_json: bool, check: bool, min_workers: int, host: str, port: int, log_level: str
) -> None:
    """Show the manager's workers and task counts."""
    configure_logging(log_level)

    async def go() -> None:
        async with Client(host, port) as client:
            reply = await client.status()
        if check:
            connected = sum(1 for w in reply.workers if w.state == "connected")
            click.echo(f"manager {reply.manager_id}: {connected} worker(s) connected")
            if connected < min_workers:
                raise click.ClickException(f"fewer than {min_workers} worker(s) connected")
            return
        click.echo(to_json(reply) if as_json else status_table(reply))

    _run(go())


@main.command("results")
@click.argument("ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@common_options
def results_command(
    ids: tuple[str, ...], as_json: bool, host: str, port: int, log_level: str
) -> None:
    """Show tasks and their results (IDS, or every task)."""
    configure_logging(log_level)

    async def go() -> None:
        async with Client(host, port) as client:
            states = await client.tasks(list(ids))
        click.echo(to_json(states) if as_json else results_table(states))

    _run(go())


@main.command("demo")
@click.option(
    "--time-scale",
    type=click.FloatRange(0, 10),
    default=0.25,
    show_default=True,
    help="Seconds per difficulty point (the seed uses 1).",
)
@click.option(
    "--policy", type=click.Choice(sorted(POLICIES)), default="best-fit", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING"]), default="WARNING")
def demo_command(time_scale: float, policy: str, as_json: bool, log_level: str) -> None:
    """The seed scenario: a manager and three workers as separate processes."""
    configure_logging(log_level)
    from manager.demo import run_demo

    summary = run_demo(time_scale=time_scale, policy=policy, log=lambda s: _info(s, as_json))
    if as_json:
        click.echo(to_json(summary))
    else:
        click.echo(results_table(summary["tasks"]))
        click.echo(
            f"\nsuccess rate: {summary['succeeded']}/{len(summary['tasks'])} "
            f"({summary['success_rate']:.0%}); 3 workers connected "
            f"{summary['connect_seconds']:.2f}s after launch; total {summary['seconds']:.2f}s"
        )
    if summary["succeeded"] != len(summary["tasks"]):
        sys.exit(1)


def _run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except ManagerUnavailable as exc:
        raise click.ClickException(f"{exc} (is it running? see --host/--port)") from None
    except ManagerError as exc:
        raise click.ClickException(f"the manager refused: {exc}") from None
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from None


def _submitted(count: int, out: dict[str, list[str]]) -> str:
    known = out["known"]
    tail = f"; {len(known)} already known: {', '.join(known[:10])}" if known else ""
    return f"submitted {count} task(s){tail}"


def _progress(done: int, total: int) -> None:
    click.echo(f"\r{done}/{total} done", nl=False, err=True)
    if done == total:
        click.echo("", err=True)


def _info(text: str, quiet: bool) -> None:
    if not quiet:
        click.echo(text, err=True)


def manager_main() -> None:
    manager_command(prog_name="python -m manager")


if __name__ == "__main__":
    main()
