"""``taskmesh status`` and ``taskmesh inspect``: what operators read about a running cluster.

Parsing and printing only; the text is ``taskmesh.statustext``, the JSON
``protocol.views``, the refreshing ``taskmesh.live``.  The shared command
plumbing (config, connection, exit codes) is ``taskmesh.cli``'s, imported
when a command runs: ``cli`` imports this module to register the commands.
"""

from __future__ import annotations

import contextlib
from typing import Any

import click

from protocol import AgentState
from runtime.settings import options
from taskmesh import command
from taskmesh.config import ClientConfig
from taskmesh.statustext import inspect_text, status_text
from taskmesh.views import dumps, status_view, worker_view
from taskmesh.watching import one_worker, watch_status


@click.command(
    "status",
    short_help="Show tasks, workers, and why tasks wait.",
    epilog="Exit codes: 0 shown (--check: healthy); 1 --check: fewer than --min-workers "
    "workers connected; 2 bad arguments; 4 the manager refused or did not answer.",
)
@command.json_flag
@click.option(
    "--check",
    is_flag=True,
    help="Health check: print one line; exit 0 when the manager answers with "
    "--min-workers workers connected, 1 when fewer are, 4 when it does not answer.",
)
@click.option(
    "--min-workers",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="Connected workers --check requires.",
)
@click.option(
    "--verbose", "-v", is_flag=True, help="Also show the manager's id and the protocol counters."
)
@click.option("--watch", "-w", is_flag=True, help="Refresh until Ctrl-C (in place on a terminal).")
@click.option(
    "--interval",
    type=click.FloatRange(0.1),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between refreshes with --watch.",
)
@options(ClientConfig)
def status_command(
    as_json: bool,
    check: bool,
    min_workers: int,
    verbose: bool,
    watch: bool,
    interval: float,
    **values: Any,
) -> None:
    """Show the manager's tasks (by state, success rate, rate, why some wait) and workers
    (host, pid, skill, kinds, capacity, running tasks, done and failed, last heard)."""
    cfg = command.client_config(values)

    async def go() -> None:
        async with command.connect(cfg) as client:
            if watch and not check:
                await watch_status(client, as_json, verbose, interval)
                return
            reply = await client.status()
        if check:
            connected = sum(1 for w in reply.workers if w.state == AgentState.CONNECTED)
            click.echo(f"manager {reply.manager_id}: {connected} worker(s) connected")
            if connected < min_workers:
                raise command.Failed(f"fewer than {min_workers} worker(s) connected")
            return
        click.echo(dumps(status_view(reply)) if as_json else status_text(reply, verbose))

    with contextlib.suppress(KeyboardInterrupt):
        command.run(go())


@click.command("inspect", short_help="Show one worker in detail.")
@click.argument("worker")
@command.json_flag
@options(ClientConfig)
def inspect_command(worker: str, as_json: bool, **values: Any) -> None:
    """Show one worker (WORKER: its id or its name) in detail, with the tasks it runs."""
    cfg = command.client_config(values)

    async def go() -> None:
        async with command.connect(cfg) as client:
            info = one_worker(await client.status(worker), worker)
            if as_json:  # the worker object, as in 'status --json' (with every running id)
                click.echo(dumps(worker_view(info)))
                return
            running = await client.tasks(info.tasks[:100]) if info.tasks else []
        click.echo(inspect_text(info, running))

    command.run(go())
