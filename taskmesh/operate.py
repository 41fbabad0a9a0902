"""``taskmesh cancel``, ``retry``, ``purge`` and ``history``: operators act on tasks.

Parsing and printing only; the ``Client`` does the work
(``taskmesh.operations``).  The shared command plumbing (config, connection,
exit codes) is ``taskmesh.cli``'s, imported when a command runs: ``cli``
imports this module to register the commands.
"""

from __future__ import annotations

import math
import re
from typing import Any

import click

from protocol import PURGEABLE, ActionReply, HistoryReply, TaskStatus
from runtime.settings import options
from taskmesh import command
from taskmesh.config import ClientConfig
from taskmesh.table import render
from taskmesh.views import action_view, dumps, history_view, iso, purge_view

ACTION_EXITS = (
    "Exit codes: 0 every task was acted on; 1 some id was refused (unknown, or in a "
    "state this action does not apply to; the reason is printed); 2 bad arguments; "
    "4 the manager refused or did not answer."
)

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}


class Duration(click.ParamType[float]):
    """Seconds, as ``90``, ``90s``, ``15m``, ``2h``, ``7d`` or ``1w`` (fractions allowed)."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*", str(value).lower())
        seconds = float(match[1]) * _UNITS[match[2]] if match else math.nan
        if not 0 <= seconds <= 1e10:
            self.fail(f"{value!r} is not a duration (like 90s, 15m, 2h, 7d)", param, ctx)
        return seconds


@click.command("cancel", short_help="Cancel tasks (queued or running).", epilog=ACTION_EXITS)
@click.argument("ids", nargs=-1, required=True)
@command.json_flag
@options(ClientConfig)
def cancel_command(ids: tuple[str, ...], as_json: bool, **values: Any) -> None:
    """Cancel tasks IDS: a queued one never runs, a running one is stopped on its worker
    (killed, for process kinds); each is recorded as 'cancelled'."""
    _act("cancel", ids, as_json, values)


@click.command("retry", short_help="Run finished tasks again.", epilog=ACTION_EXITS)
@click.argument("ids", nargs=-1, required=True)
@command.json_flag
@options(ClientConfig)
def retry_command(ids: tuple[str, ...], as_json: bool, **values: Any) -> None:
    """Run finished tasks IDS again, each as a new attempt (its earlier attempts stay in
    its history: 'taskmesh history ID')."""
    _act("retry", ids, as_json, values)


def _act(action: str, ids: tuple[str, ...], as_json: bool, values: dict[str, Any]) -> None:
    cfg = command.client_config(values)

    async def go() -> ActionReply:
        async with command.connect(cfg) as client:
            act = client.cancel if action == "cancel" else client.retry
            return await act(list(ids))

    reply = command.run(go())
    if as_json:
        click.echo(dumps(action_view(reply)))
    else:
        for state in reply.acted:
            if action == "cancel":
                click.echo(f"{state.id}: cancelled")
            else:
                click.echo(f"{state.id}: queued again (attempt {state.attempt + 1} next)")
        for refusal in reply.refused:
            click.echo(f"{refusal.id}: {refusal.message}", err=True)
    if reply.refused:
        done = "cancelled" if action == "cancel" else "retried"
        raise command.Failed(f"{len(reply.refused)} of {len(set(ids))} task(s) not {done}")


@click.command(
    "purge",
    short_help="Remove finished tasks from the journal.",
    epilog="Exit codes: 0 done (also when nothing matched); 2 bad arguments; "
    "4 the manager refused or did not answer.",
)
@click.option(
    "--state",
    required=True,
    type=click.Choice(sorted(str(s) for s in PURGEABLE)),  # values, not enum names
    help="Which finished tasks: 'done' every one, 'failed' all but the succeeded, "
    "or one result status.",
)
@click.option(
    "--older-than",
    type=Duration(),
    default=0.0,
    metavar="DURATION",
    help="Only tasks that finished at least this long ago (90s, 15m, 2h, 7d) [default: all].",
)
@command.json_flag
@options(ClientConfig)
def purge_command(state: str, older_than: float, as_json: bool, **values: Any) -> None:
    """Remove finished tasks and their history from the journal; prints how many.

    Their ids are forgotten: submitting one again runs it anew.
    """
    cfg = command.client_config(values)

    async def go() -> int:
        async with command.connect(cfg) as client:
            return await client.purge(state, older_than)

    purged = command.run(go())
    if as_json:
        click.echo(dumps(purge_view(purged, state, older_than)))
    else:
        click.echo(f"purged {purged} task(s)")


@click.command(
    "history",
    short_help="Show every attempt of tasks.",
    epilog="Exit codes: 0 shown; 1 some id is unknown; 4 the manager refused or did not answer.",
)
@click.argument("ids", nargs=-1, required=True)
@command.json_flag
@options(ClientConfig)
def history_command(ids: tuple[str, ...], as_json: bool, **values: Any) -> None:
    """Show every recorded attempt of tasks IDS: retried errors, attempts whose worker was
    lost, results a retry replaced, and the final result (last)."""
    cfg = command.client_config(values)

    async def go() -> list[HistoryReply]:
        async with command.connect(cfg) as client:
            return [await client.history(task_id) for task_id in ids]

    replies = command.run(go())
    unknown = [r.task.id for r in replies if r.task.state == TaskStatus.UNKNOWN]
    if as_json:
        click.echo(dumps([history_view(r) for r in replies]))
    else:
        click.echo("\n\n".join(history_text(r) for r in replies if r.task.id not in unknown))
        for task_id in unknown:
            click.echo(f"{task_id}: no such task", err=True)
    if unknown:
        raise command.Failed(f"{len(unknown)} unknown task(s)")


def history_text(reply: HistoryReply) -> str:
    task = reply.task
    head = f"task {task.id}: {task.state}, {len(reply.attempts) + reply.omitted} attempt(s)"
    if reply.omitted:
        head += f" ({reply.omitted} oldest not shown)"
    rows = []
    for r in reply.attempts:
        error = f"{r.error.type}: {r.error.message}".replace("\n", " ") if r.error else ""
        rows.append(
            [
                r.attempt,
                r.status,
                r.worker or ("(manager)" if not r.started else ""),
                iso(r.started) or "",
                iso(r.finished) or "",
                (r.finished - r.started) if r.started and r.finished else None,
                error[:57] + "..." if len(error) > 60 else error,
            ]
        )
    table = render(["attempt", "status", "worker", "started", "finished", "seconds", "error"], rows)
    return f"{head}\n{table}"
