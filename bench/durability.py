"""What durability costs: end-to-end task throughput with and without the journal.

Runs the same load three times against a fresh manager and two workers:
``--db :memory:`` (the baseline: nothing on disk), the default journal (SQLite
WAL, synchronous=NORMAL: survives a killed process) and ``--fsync`` (survives
a power cut).  Prints tasks/s and the ratio to the baseline measured in the
same run.  No-op ``echo`` tasks, so the journal and the messaging are all
that is measured.

    .venv/bin/python -m bench.durability --tasks 5000
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import click

from protocol import AgentState, TaskSpec
from taskmesh.client import Client
from taskmesh.procs import Proc, spawn, start_manager
from taskmesh.table import render

MODES = {
    "memory (baseline)": ["--db", ":memory:"],
    "journal (WAL)": ["--db", "{dir}/journal.db"],
    "journal + fsync": ["--db", "{dir}/journal.db", "--fsync"],
}


async def drive(port: int, tasks: int, batch: int) -> float:
    specs = [TaskSpec(id=f"e{i}", kind="echo", payload=i) for i in range(tasks)]
    async with Client("127.0.0.1", port, timeout=30) as client:
        for _ in range(600):  # bounded: 30 s
            if sum(w.state == AgentState.CONNECTED for w in (await client.status()).workers) >= 2:
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the workers did not connect within 30 s")
        start = time.perf_counter()
        for i in range(0, tasks, batch):
            await client.submit(specs[i : i + batch])
        await client.wait([s.id for s in specs], timeout=600)
        return time.perf_counter() - start


def run_mode(args: list[str], tasks: int, batch: int, capacity: int) -> float:
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="taskmesh-bench-") as tmp:
        logs = Path(tmp)
        try:
            mgr_args = ["--log-level", "WARNING", *(a.format(dir=tmp) for a in args)]
            manager, port = start_manager("manager", mgr_args, logs)
            procs.append(manager)
            for n in range(2):
                procs.append(
                    spawn(
                        f"w{n}",
                        "worker",
                        [
                            "--port",
                            str(port),
                            "--name",
                            f"w{n}",
                            "--skill",
                            "10",
                            "--capacity",
                            str(capacity),
                            "--log-level",
                            "WARNING",
                        ],
                        logs,
                    )
                )
            return asyncio.run(drive(port, tasks, batch))
        finally:
            for proc in procs:
                proc.stop()


@click.command()
@click.option("--tasks", type=click.IntRange(1, 1_000_000), default=5000, show_default=True)
@click.option("--batch", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--capacity", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option(
    "--rounds",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Runs per mode, interleaved; the best counts (this machine is noisy).",
)
@click.option("--json", "as_json", is_flag=True)
def main(tasks: int, batch: int, capacity: int, rounds: int, as_json: bool) -> None:
    results: dict[str, float] = dict.fromkeys(MODES, 0.0)
    for round_no in range(1, rounds + 1):
        for name, args in MODES.items():
            click.echo(f"round {round_no}/{rounds}: {name}, {tasks} tasks ...", err=True)
            results[name] = max(results[name], tasks / run_mode(args, tasks, batch, capacity))
    base = results["memory (baseline)"]
    if as_json:
        click.echo(
            json.dumps({k: {"tasks_per_s": v, "ratio": v / base} for k, v in results.items()})
        )
        return
    rows = [[name, f"{rate:,.0f}", f"{rate / base:.2f}"] for name, rate in results.items()]
    click.echo(render(["mode", "tasks/s", "vs baseline"], rows))


if __name__ == "__main__":
    sys.exit(main())
