"""Network faults: how long a worker is out after a partition, and what a short drop costs it.

Each run starts a manager and two workers in a private network namespace
(``taskmesh.bench.netns``): the manager binds ``0.0.0.0``; worker ``a`` reaches
it at 127.0.0.2 and worker ``b`` at 127.0.0.3, so dropping every packet of
127.0.0.2 (iptables) partitions ``a`` alone while ``b`` and this program's
client (127.0.0.1) carry on.  Usage and how to read the output: bench/README.md.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from protocol import AgentState, TaskSpec
from taskmesh.bench.netns import NetnsError, PrivateNetwork, unavailable
from taskmesh.client import Client
from taskmesh.errors import ManagerUnavailable
from taskmesh.procs import Proc, ProcessFailed, spawn, start_manager
from taskmesh.table import render

A, B = "127.0.0.2", "127.0.0.3"  # worker a's and b's address of the manager
POLL = 0.05  # seconds between status reads


@dataclass
class Row:
    """One fault, as the manager's ``status`` saw worker ``a`` through it (times in s)."""

    fault: str  # "partition", "short drop" or "PUB cut"
    cut: float  # how long its packets were dropped
    run: int
    dropped: int = 0  # packets the cut dropped (0: the cut did not take effect)
    out_after: float | None = None  # from the cut until a was no longer connected
    states: str = ""  # a's states from the cut until it was connected again, each change
    pending: float | None = None  # from the heal until a re-registered (pending)
    connected: float | None = None  # from the heal until a was connected again (blank: never out)
    b_hit: bool = False  # b, never cut, was seen not connected
    attempt: int | None = None  # short drop: the attempt that finished a's long task
    ran_on: str = ""  # short drop: the worker that finished it


class Run:
    """A manager and workers ``a``, ``b`` in ``net``; every process is stopped by ``stop``."""

    def __init__(self, net: PrivateNetwork, logs: Path, interval: float, liveness: int) -> None:
        self.net, self.logs = net, logs
        self.beat = ["--heartbeat-interval", str(interval), "--liveness", str(liveness)]
        self.procs: list[Proc] = []
        self.port = 0

    def start(self) -> None:
        args = ["--bind", "0.0.0.0", "--db", str(self.logs / "journal.db"), *self.beat]
        manager, self.port = start_manager("manager", args, self.logs)
        self.procs.append(manager)
        for name, skill, host in (("a", 9, A), ("b", 3, B)):
            args = ["--port", str(self.port), "--name", name, "--skill", str(skill)]
            args += ["--host", host, "--capacity", "4", *self.beat]
            self.procs.append(spawn(name, "worker", args, self.logs))

    def pub_port(self) -> int:
        info = json.loads((self.logs / "manager.ready.json").read_text())
        return int(str(info["pub_endpoint"]).rsplit(":", 1)[1])

    def stop(self) -> None:
        for proc in reversed(self.procs):  # workers first: the manager sees them leave
            proc.stop(timeout=5)


async def states(client: Client) -> dict[str, str]:
    try:
        reply = await client.status()
    except ManagerUnavailable:
        return {}
    return {w.name: w.state for w in reply.workers}


class Watch:
    """``a``'s state changes as ``status`` shows them: ``log`` of (monotonic time, state)."""

    def __init__(self, client: Client, row: Row) -> None:
        self.client, self.row = client, row
        self.log: list[tuple[float, str]] = []

    async def run(self, seconds: float, until: Callable[[], bool] | None = None) -> None:
        """Poll for ``seconds`` or until ``until()``; ``row.states``, ``row.b_hit`` kept."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            now = await states(self.client)
            if now:
                seen = now.get("a", "absent")
                if not self.log or self.log[-1][1] != seen:
                    self.log.append((time.monotonic(), seen))
                    self.row.states += ("," if self.row.states else "") + seen
                self.row.b_hit |= now.get("b") != AgentState.CONNECTED
            if until is not None and until():
                return
            await asyncio.sleep(POLL)

    def out_since(self, since: float) -> float | None:
        """When ``a`` was first seen not connected after ``since``."""
        return next((t for t, s in self.log if t >= since and s != AgentState.CONNECTED), None)

    def first(self, state: str, since: float) -> float | None:
        return next((t for t, s in self.log if t >= since and s == state), None)

    async def through_heal(self, cut_at: float, healed: float, window: float) -> None:
        """Watch on after the heal until ``a`` is connected again (if it was ever out,
        also after the heal: TCP's retries can make the silence outlast a short cut),
        then fill the row's times."""

        def settled() -> bool:
            if self.out_since(cut_at) is None:
                return time.monotonic() - healed > window + 1
            return self.log[-1][1] == AgentState.CONNECTED

        await self.run(4 * window + 20, settled)
        out = self.out_since(cut_at)
        row = self.row
        row.out_after = None if out is None else out - cut_at
        pending = self.first(AgentState.PENDING, healed)
        row.pending = None if pending is None else pending - healed
        back = (
            self.log[-1][0] if out is not None and self.log[-1][1] == AgentState.CONNECTED else None
        )
        row.connected = None if back is None else back - healed


async def all_connected(client: Client, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((await states(client)).values()) == [AgentState.CONNECTED] * 2:
            return
        await asyncio.sleep(POLL)
    raise ProcessFailed(f"workers a and b not connected within {timeout:.0f}s")


async def partition(run: Run, row: Row, window: float, port: int | None = None) -> None:
    """Cut ``a`` (or only its traffic on ``port``) for ``row.cut`` s; time its return."""
    async with Client("127.0.0.1", run.port, timeout=2) as client:
        await all_connected(client, 30)
        watch = Watch(client, row)
        cut = run.net.cut(A, port)
        cut_at = time.monotonic()
        await watch.run(row.cut)
        row.dropped = run.net.dropped()
        await watch.through_heal(cut_at, run.net.heal(cut), window)


async def short_drop(run: Run, row: Row, window: float) -> None:
    """``a`` busy with a long task and a stream of short ones; cut for ``row.cut`` s."""
    async with Client("127.0.0.1", run.port, timeout=2) as client:
        await all_connected(client, 30)
        hold = row.cut + 3 * window + 2
        # difficulty 8: only a (skill 9) may run them, so a re-run shows as a new attempt
        await client.submit([TaskSpec(id="long", kind="sleep", payload=hold, difficulty=8)])
        stream = [
            TaskSpec(id=f"s{i}", kind="sleep", payload=0.05, difficulty=8)
            for i in range(int(hold / 0.05) * 3)
        ]
        await client.submit(stream)  # results in flight when the drop begins
        await asyncio.sleep(0.5)
        watch = Watch(client, row)
        cut = run.net.cut(A)
        cut_at = time.monotonic()
        await watch.run(row.cut)
        row.dropped = run.net.dropped()
        await watch.through_heal(cut_at, run.net.heal(cut), window)
        (done,) = await client.wait(["long"], timeout=hold + 60)
        row.attempt = done.result.attempt if done.result else None
        row.ran_on = done.result.worker if done.result else ""


def measure(fault: str, cut: float, index: int, interval: float, liveness: int) -> Row:
    """One run in a fresh namespace; every process and rule is gone when it returns."""
    row = Row(fault, cut, index)
    window = interval * liveness
    logs = Path(tempfile.mkdtemp(prefix="taskmesh-netfaults-"))
    try:
        with PrivateNetwork() as net:
            run = Run(net, logs, interval, liveness)
            try:
                run.start()
                if fault == "partition":
                    asyncio.run(partition(run, row, window))
                elif fault == "PUB cut":
                    asyncio.run(partition(run, row, window, run.pub_port()))
                else:
                    asyncio.run(short_drop(run, row, window))
            finally:
                run.stop()
    except BaseException:
        click.echo(f"logs kept in {logs}", err=True)
        raise
    shutil.rmtree(logs, ignore_errors=True)
    return row


def floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: seconds, comma-separated (e.g. 2,10,30)") from None
    if any(not 0 < v <= 600 for v in values):
        raise click.BadParameter(f"{text!r}: each between 0 and 600 s")
    return values


@click.command(context_settings={"show_default": True})
@click.option("--partitions", default="2,10,30", help="Seconds each partition of a lasts.")
@click.option("--short", "shorts", default="2", help="Seconds of drops while a runs a task.")
@click.option("--pub-cut", default="5", help="Seconds a's PUB connection alone is cut.")
@click.option("--runs", type=click.IntRange(1, 20), default=1, help="Runs of each.")
@click.option("--heartbeat-interval", type=click.FloatRange(0.05, 10), default=1.0)
@click.option("--liveness", type=click.IntRange(1, 100), default=3)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option(
    "--save",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table to SAVE.txt and the JSON to SAVE.json.",
)
def main(
    partitions: str,
    shorts: str,
    pub_cut: str,
    runs: int,
    heartbeat_interval: float,
    liveness: int,
    as_json: bool,
    save: Path | None,
) -> None:
    """Drop worker a's packets (needs root: a network namespace and iptables)."""
    plan = [("partition", d) for d in floats(partitions)]
    plan += [("short drop", d) for d in floats(shorts)]
    plan += [("PUB cut", d) for d in floats(pub_cut)]
    reason = unavailable()
    if reason is not None:
        raise click.ClickException(reason)
    rows: list[Row] = []
    started = time.monotonic()
    for fault, cut in plan:
        for index in range(1, runs + 1):
            click.echo(
                f"[{time.monotonic() - started:6.1f}s] {fault} {cut:g}s, run {index}", err=True
            )
            try:
                rows.append(measure(fault, cut, index, heartbeat_interval, liveness))
            except (ProcessFailed, NetnsError) as exc:
                raise click.ClickException(str(exc)) from None
    out = {"heartbeat_interval": heartbeat_interval, "liveness": liveness}
    text = json.dumps({**out, "rows": [asdict(r) for r in rows]}, indent=2)
    window = heartbeat_interval * liveness
    table = f"heartbeat interval {heartbeat_interval:g}s x liveness {liveness} (window {window:g}s)"
    headers = ["fault", "cut s", "run", "dropped", "out after", "a's states", "pending"]
    headers += ["connected", "b hit", "attempt", "ran on"]
    table += "\n" + render(headers, [list(asdict(r).values()) for r in rows])
    if save is not None:
        save.with_suffix(".json").write_text(text + "\n")
        save.with_suffix(".txt").write_text(table + "\n")
    click.echo(text if as_json else table)


if __name__ == "__main__":
    main()
