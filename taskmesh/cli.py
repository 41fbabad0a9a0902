"""The ``taskmesh`` command: one subcommand per process and per operator action.

Parsing only: each command turns its options into a config (one declaration
per setting, ``runtime.settings``) or a request, and hands it to the module
that does the work.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from manager.cli import manager_command
from protocol import TASK_FILTERS, UNSUCCESSFUL, ResultStatus, TaskFilter, TaskState
from runtime.keys import KeyFileError, generate
from runtime.logs import configure_logging
from runtime.settings import from_cli, options
from taskmesh import command
from taskmesh.bench.cli import bench_command
from taskmesh.config import ClientConfig, DemoConfig, settings_table
from taskmesh.errors import WaitTimeout
from taskmesh.observe import inspect_command, status_command
from taskmesh.operate import cancel_command, history_command, purge_command, retry_command
from taskmesh.progress import Progress
from taskmesh.report import results_csv, results_table
from taskmesh.taskfile import TaskFileError, read_tasks
from taskmesh.views import dumps, submission_view, task_view
from worker.cli import worker_command


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Start with: 'taskmesh manager', 'taskmesh worker --skill 5', "
    "'taskmesh submit tasks.json --wait', 'taskmesh status'. Every option also comes from "
    "its TASKMESH_* environment variable ('taskmesh settings' lists them).",
)
@click.version_option(package_name="taskmesh")
def main() -> None:
    """taskmesh: distributed tasks over ZeroMQ, assigned by skill, never lost."""


main.add_command(manager_command)
main.add_command(worker_command)
main.add_command(bench_command)
for _command in (
    cancel_command,
    retry_command,
    purge_command,
    history_command,
    status_command,
    inspect_command,
):
    main.add_command(_command)


@main.command(
    "submit",
    short_help="Submit tasks from a JSON file (and wait for them).",
    epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in command.SUBMIT_EXIT_CODES.items()),
)
@click.argument("file", type=click.File("rb"))
@click.option("--wait", "wait_", is_flag=True, help="Wait until every task has its final result.")
@command.json_flag
@options(ClientConfig)
def submit_command(file: Any, wait_: bool, as_json: bool, **values: Any) -> None:
    """Submit the tasks in FILE (a JSON list; '-' reads stdin)."""
    cfg = command.client_config(values)
    try:
        specs = read_tasks(file.read(), getattr(file, "name", "<stdin>"))
    except TaskFileError as exc:
        raise command.BadInput(str(exc)) from None

    async def go() -> None:
        async with command.connect(cfg) as client:
            reply = await client.submit(specs, watch=wait_)
            known = [s.id for s in reply.known]
            if known:
                _info(f"{len(known)} task(s) already known: {', '.join(known[:10])}", as_json)
            _warn_unmatched(reply.unmatched, as_json)
            submitted: dict[str, Any] = {
                "accepted": reply.accepted,
                "known": known,
                "unmatched": reply.unmatched,
            }
            if not wait_:
                view = submission_view(reply.accepted, known)
                click.echo(dumps(view) if as_json else _submitted(len(reply.accepted), submitted))
                return
            progress = None if as_json else Progress(len(specs))
            try:
                states = await client.wait(
                    [s.id for s in specs], timeout=cfg.timeout, progress=progress
                )
            except WaitTimeout as exc:
                _show_results(exc.done, as_json, submitted, pending=exc.pending)
                raise command.GaveUp(
                    f"{len(exc.pending)} task(s) not done within {cfg.timeout}s"
                ) from None
            finally:
                if progress is not None:
                    progress.close()
            _show_results(states, as_json, submitted)
            bad = [s for s in states if s.result is None or not s.result.success]
            if bad:
                raise command.Failed(f"{len(bad)} of {len(states)} task(s) did not succeed")

    command.run(go())


def _show_results(
    states: list[TaskState],
    as_json: bool,
    submitted: dict[str, Any],
    pending: list[str] | None = None,
) -> None:
    """What submit --wait prints: one JSON object (as without --wait, plus the results)."""
    if as_json:
        click.echo(dumps(submission_view(**submitted, results=states, pending=pending)))
        return
    click.echo(results_table(states))
    if pending:
        click.echo(f"pending: {', '.join(pending[:50])}" + (" ..." if len(pending) > 50 else ""))


@main.command("results", short_help="Show tasks and their results.")
@click.argument("ids", nargs=-1)
@click.option(
    "--state",
    type=click.Choice(sorted(str(s) for s in TASK_FILTERS if s)),  # values, not enum names
    default=None,
    help="Only tasks in this state, or with this result ('failed': done without success).",
)
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many tasks.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="How to print them (--json is --format json).",
)
@command.json_flag
@options(ClientConfig)
def results_command(
    ids: tuple[str, ...],
    state: str | None,
    limit: int | None,
    fmt: str,
    as_json: bool,
    **values: Any,
) -> None:
    """Show tasks and their results (IDS, or every task in submission order)."""
    cfg = command.client_config(values)

    async def go() -> None:
        async with command.connect(cfg) as client:
            states = await client.tasks(list(ids), state=state or "", limit=limit)
        if ids and state:
            states = [s for s in states if s.state == state or _status(s) in _wanted(state)]
        chosen = states[:limit]
        if as_json or fmt == "json":
            click.echo(dumps([task_view(s) for s in chosen]))
        elif fmt == "csv":
            click.echo(results_csv(chosen), nl=False)
        else:
            click.echo(results_table(chosen))

    command.run(go())


def _status(state: TaskState) -> str:
    return state.result.status if state.result is not None else ""


def _wanted(state: str) -> set[str]:
    if state == TaskFilter.FAILED:
        return set(UNSUCCESSFUL)
    return {state}


@main.command("demo", short_help="Run the seed scenario: a manager and three workers.")
@command.json_flag
@options(DemoConfig)
def demo_command(as_json: bool, **values: Any) -> None:
    """The seed scenario: a manager and three workers as separate processes."""
    cfg = from_cli(DemoConfig, values)
    configure_logging(cfg.log_level)
    from taskmesh.demo import run_demo

    summary = run_demo(
        time_scale=cfg.time_scale,
        policy=cfg.policy,
        log=lambda s: _info(s, as_json),
        progress=not as_json,
    )
    if as_json:
        click.echo(dumps({**summary, "tasks": [task_view(s) for s in summary["tasks"]]}))
    else:
        click.echo(results_table(summary["tasks"]))
        click.echo(
            f"\nsuccess rate: {summary[ResultStatus.SUCCEEDED]}/{len(summary['tasks'])} "
            f"({summary['success_rate']:.0%}); 3 workers connected "
            f"{summary['connect_seconds']:.2f}s after launch; total {summary['seconds']:.2f}s"
        )
    if summary[ResultStatus.SUCCEEDED] != len(summary["tasks"]):
        sys.exit(1)


@main.group("keys", short_help="Make CURVE key pairs (encryption, allow-lists).")
def keys_group() -> None:
    """CURVE keys: make a key pair for a manager, worker or client (see SECURITY.md)."""


@keys_group.command("generate")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    default=".",
    show_default=True,
    metavar="DIR",
    help="Where to write NAME.key (public) and NAME.key_secret (secret, mode 0600).",
)
def keys_generate_command(name: str, directory: str) -> None:
    """Write a new key pair: DIR/NAME.key and DIR/NAME.key_secret (never overwritten)."""
    try:
        public, secret = generate(name, directory)
    except KeyFileError as exc:
        raise command.BadInput(str(exc)) from None
    click.echo(f"public key: {public}  (give it to the peers that must accept this one)")
    click.echo(f"secret key: {secret}  (keep it here: --secret-key)")


@main.command("settings", short_help="List every setting and its environment variable.")
@click.option(
    "--update",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Replace the table in this Markdown file (the README) instead of printing it.",
)
def settings_command(update: str | None) -> None:
    """List every setting's environment variable, option, default and meaning (Markdown)."""
    table = settings_table()
    if update is None:
        click.echo(table)
        return
    text = Path(update).read_text()
    start = text.find(table.split("\n", 1)[0])
    if start < 0:
        raise command.BadInput(f"{update} has no settings table to replace")
    end = text.find("\n\n", start)
    Path(update).write_text(text[:start] + table + (text[end:] if end >= 0 else "\n"))


def _warn_unmatched(unmatched: dict[str, str], quiet: bool) -> None:
    """Tell at once about accepted tasks that no connected worker can run, by reason."""
    by_reason: dict[str, list[str]] = {}
    for task_id, why in unmatched.items():
        by_reason.setdefault(why, []).append(task_id)
    for why, ids in by_reason.items():
        more = " ..." if len(ids) > 10 else ""
        _info(f"warning: {len(ids)} task(s) unmatched, {why}: {', '.join(ids[:10])}{more}", quiet)


def _submitted(count: int, out: dict[str, Any]) -> str:
    known = out["known"]
    tail = f"; {len(known)} already known: {', '.join(known[:10])}" if known else ""
    return f"submitted {count} task(s){tail}"


def _info(text: str, quiet: bool) -> None:
    if not quiet:
        click.echo(text, err=True)
