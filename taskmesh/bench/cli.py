"""``taskmesh bench``: parse the experiment, run it and its raw baselines, report."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import click

from taskmesh.bench.load import JOURNALS, Load, run_load
from taskmesh.bench.report import figures, sweep_table, table, write
from worker.kinds import BUILTIN

SWEEPABLE = ("workers", "capacity", "payload", "tasks", "journal", "duration")


def _sweep(text: str | None) -> tuple[str, list[str]] | None:
    if text is None:
        return None
    name, _, values = text.partition("=")
    if name not in SWEEPABLE or not values:
        raise click.BadParameter(f"expected NAME=V1,V2,... with NAME one of {', '.join(SWEEPABLE)}")
    return name, [v for v in values.split(",") if v]


def _kinds(values: tuple[str, ...], duration: float) -> tuple[tuple[str, int], ...]:
    """``--kind`` values (``echo``, ``echo=3,noop=1``, repeatable) as (kind, weight) pairs."""
    weights: dict[str, int] = {}
    for item in (part.strip() for value in values for part in value.split(",")):
        if not item:
            continue
        name, eq, weight = item.partition("=")
        if name not in BUILTIN:
            raise click.BadParameter(
                f"{name!r} is not a built-in kind ({', '.join(sorted(BUILTIN))})",
                param_hint="--kind",
            )
        if eq and not (weight.isdigit() and 1 <= int(weight) <= 1000):
            raise click.BadParameter(
                f"{item!r}: the weight after '=' must be a whole number 1-1000",
                param_hint="--kind",
            )
        weights[name] = weights.get(name, 0) + (int(weight) if eq else 1)
    if values and duration > 0 and not weights.keys() & {"sleep", "simulate"}:
        raise click.BadParameter(
            "--duration applies to sleep and simulate tasks; add one of them",
            param_hint="--kind",
        )
    return tuple(weights.items())


def _with(load: Load, name: str, value: str) -> Load:
    kind = type(getattr(load, name))
    try:
        return dataclasses.replace(load, **{name: kind(value)})
    except ValueError:
        raise click.BadParameter(f"{name}={value!r} is not a {kind.__name__}") from None


@click.command("bench", short_help="Measure taskmesh against raw pyzmq on this machine.")
@click.option(
    "--tasks",
    type=click.IntRange(1, 10_000_000),
    default=50_000,
    show_default=True,
    help="Tasks in the throughput run.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes started [default: 2]; with --host, the connected workers to "
    "wait for [default: 1] (the bench counts and reports all that are connected).",
)
@click.option(
    "--capacity",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Each worker's --capacity.",
)
@click.option(
    "--journal",
    type=click.Choice(JOURNALS),
    default="memory",
    show_default=True,
    help="The manager's journal: none (:memory:), a file, or a file with --fsync.",
)
@click.option(
    "--duration",
    type=click.FloatRange(0, 60),
    default=0.0,
    show_default=True,
    help="Seconds each task sleeps (0: no-op tasks).",
)
@click.option(
    "--payload",
    type=click.IntRange(0, 200_000),
    default=0,
    help="Bytes of data per task: the payload of echo/noop tasks (echo returns them); "
    "sleep tasks, whose payload is their seconds, carry them in the task's description.",
)
@click.option("--difficulty", default="1", show_default=True, help="1-10, or 'mix'.")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    metavar="KIND[=WEIGHT],...",
    help=f"Built-in kinds to submit, in turn by weight ({', '.join(sorted(BUILTIN))}; "
    "repeatable, e.g. echo=3,noop=1). Default: sleep with --duration, echo with --payload, "
    "else noop. sleep tasks sleep --duration s; simulate ones difficulty x --duration s.",
)
@click.option(
    "--trips",
    type=click.IntRange(0, 100_000),
    default=500,
    show_default=True,
    help="Single-task round trips timed after the throughput run.",
)
@click.option("--broadcast", is_flag=True, help="Also measure Ceylon's broadcast vs PUB/SUB.")
@click.option("--raw/--no-raw", default=True, help="Measure the raw pyzmq baselines too.")
@click.option("--sweep", default=None, help=f"NAME=V1,V2 ... over one of {', '.join(SWEEPABLE)}.")
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Write JSON/table/plot."
)
@click.option(
    "--host",
    default="",
    help="Use the running manager at HOST (starts nothing; CPU and memory of processes "
    "the bench did not start are reported as n/a / null).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8888,
    show_default=True,
    metavar="PORT",
    help="The running manager's port (with --host).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (a list: --sweep).")
def bench_command(
    sweep: str | None,
    out: str | None,
    as_json: bool,
    raw: bool,
    broadcast: bool,
    **values: Any,
) -> None:
    """Load experiment: taskmesh against raw pyzmq, measured in the same run.

    Starts a manager and worker processes on 127.0.0.1 (or uses --host),
    runs --tasks no-op tasks (or --duration sleeps), then --trips single-task
    round trips, and prints throughput, round-trip percentiles, CPU per task
    per process and memory, each beside its raw baseline and their ratio.
    """
    if values["difficulty"] != "mix" and values["difficulty"] not in {str(n) for n in range(1, 11)}:
        raise click.BadParameter("expected 1-10 or 'mix'", param_hint="--difficulty")
    values["kinds"] = _kinds(values["kinds"], values["duration"])
    if values["workers"] is None:
        values["workers"] = 1 if values["host"] else 2
    load = Load(**values)
    plan = _sweep(sweep)
    if plan and load.host and plan[0] in ("workers", "capacity", "journal"):
        raise click.BadParameter(
            f"with --host the running cluster sets {plan[0]}; sweep something else",
            param_hint="--sweep",
        )
    loads = [_with(load, plan[0], v) for v in plan[1]] if plan else [load]
    rows = [_one(item, raw, broadcast, quiet=as_json) for item in loads]
    param = plan[0] if plan else None
    if as_json:
        click.echo(json.dumps(rows if param else rows[0], indent=2))
    else:
        click.echo(sweep_table(param, rows) if param else table(rows[0]))
    if out is not None:
        name = f"sweep-{param}" if param else "bench"
        files = write(Path(out), name, rows, param)
        click.echo("wrote " + ", ".join(str(f) for f in files), err=True)
        if param and not any(f.suffix == ".png" for f in files):
            click.echo("no plot: pip install 'taskmesh[plot]' (matplotlib)", err=True)


def _one(load: Load, raw: bool, broadcast: bool, quiet: bool) -> dict[str, Any]:
    from taskmesh.bench.broadcast import broadcast_rate
    from taskmesh.bench.raw import dispatch_rate, pubsub_rate, round_trip

    def say(text: str) -> None:
        if not quiet:
            click.echo(text, err=True)

    baselines: dict[str, dict[str, Any]] = {}
    say("taskmesh ...")
    got = run_load(load, show=not quiet)
    if raw:  # after the run: it needs the run's worker count (--host: as connected)
        say(f"raw pyzmq: one message per task to {got.workers} workers ...")
        baselines["dispatch"] = dispatch_rate(
            min(load.tasks, 200_000), workers=got.workers, payload=load.payload
        )
        if load.trips:
            say("raw pyzmq: round trips ...")
            baselines["round_trip"] = round_trip(load.trips, warmup=max(10, load.trips // 10))
    if broadcast:
        say("broadcast ...")
        baselines["broadcast"] = broadcast_rate(got.workers, 100_000)
        if raw:
            baselines["pubsub"] = pubsub_rate(200_000, subscribers=got.workers)
    return figures(load, got, baselines)


def main() -> None:  # pragma: no cover - python -m taskmesh.bench.cli
    sys.exit(bench_command())
