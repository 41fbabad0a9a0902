"""Chaos run: SIGKILL workers and the manager while tasks flow; count what was lost or doubled.

The verdict comes from the journal, read-only once every process has stopped, compared with
two reads through the client.  Usage and how to read the output: bench/README.md.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import sqlite3
import tempfile
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from protocol import AgentState, ResultStatus, TaskResult, TaskSpec, TaskState, TaskStatus, build
from protocol.codec import unpack
from taskmesh.client import Client
from taskmesh.errors import ManagerUnavailable
from taskmesh.procs import Proc, ProcessFailed, spawn, start_manager
from taskmesh.table import render

FAST = ["--heartbeat-interval", "0.2"]
BATCHES = 6  # 0-3 go before the manager kill, 4 while it is down, 5 after its restart
KILL_BATCH = 4
DB = "journal.db"
QUIET = 2.0  # seconds between the two reads of every result
Reads = tuple[dict[str, TaskResult], dict[str, TaskResult]]


@dataclass
class Chaos:
    """One run: its processes, the batches it feeds, its kills and what the manager reported."""

    logs: Path
    rng: random.Random
    batches: list[list[TaskSpec]]
    kill_interval: float
    max_kills: int
    timeout: float
    deadline: float = 0.0  # set when the run starts
    procs: list[Proc] = field(default_factory=list)  # every process started, for stop_all
    workers: list[Proc] = field(default_factory=list)  # the ones not killed (yet)
    manager: Proc | None = None
    port: int = 0  # bound by the first manager, reused by its successor
    tally: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)  # processes that died on their own
    submitted: list[str] = field(default_factory=list)
    done: int = 0  # as the manager's last status said
    busy: list[str] = field(default_factory=list)  # our live workers with tasks in hand
    by_epoch: dict[str, dict[str, int]] = field(default_factory=dict)  # one per incarnation
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    error: str = ""

    async def start_manager(self) -> None:
        name = f"manager-{self.tally['manager restarts'] + 1}"
        args = ["--db", str(self.logs / DB), *FAST, "--liveness", "3"]
        manager, self.port = await asyncio.to_thread(
            start_manager, name, args, self.logs, self.port
        )
        self.manager = manager
        self.procs.append(manager)

    def start_worker(self) -> None:
        name = f"w{len(self.procs)}"  # unique: numbered by processes started so far
        args = ["--port", str(self.port), "--name", name, "--skill", "10", "--capacity", "4"]
        args += FAST  # tasks are the built-in 'sleep' kind: no handler module needed
        proc = spawn(name, "worker", args, self.logs)
        self.procs.append(proc)
        self.workers.append(proc)

    def kill_worker(self, name: str) -> None:
        victim = next(w for w in self.workers if w.name == name)
        victim.kill()
        self.workers.remove(victim)
        self.tally["worker kills"] += 1
        self.start_worker()

    def check_alive(self) -> None:
        """The manager dying on its own ends the run; a worker is noted and replaced."""
        if (m := self.manager) is not None and not m.alive():
            raise ProcessFailed(f"{m.name} exited with {m.popen.returncode}:\n{m.log()}")
        for proc in [w for w in self.workers if not w.alive()]:
            self.unexpected.append(f"{proc.name} exited with {proc.popen.returncode}")
            self.workers.remove(proc)
            self.start_worker()

    def stop_all(self) -> None:
        """Workers first (all signalled, then awaited), the manager last: it closes the journal."""
        for proc in self.workers:
            proc.signal(signal.SIGTERM)
        for proc in sorted(self.procs, key=lambda p: p is self.manager):
            proc.stop(timeout=10)

    def say(self, text: str) -> None:
        click.echo(f"[{time.monotonic() - self.started:6.1f}s] {text}", err=True)

    async def submit(self, client: Client, batch: list[TaskSpec]) -> None:
        """Submission is idempotent by id: a submit that got no reply is simply sent again."""
        while True:
            try:
                await client.submit(batch)
                break
            except ManagerUnavailable:
                self.tally["submit retries"] += 1
                if time.monotonic() > self.deadline:
                    raise TimeoutError("could not submit before the deadline") from None
        self.submitted += [t.id for t in batch]

    async def poll(self, client: Client) -> int:
        """Refresh the counts; returns how many workers are connected (-1: no answer)."""
        try:
            reply = await client.status()
        except ManagerUnavailable:
            return -1
        self.by_epoch[reply.epoch] = reply.counts
        self.done = reply.counts[TaskStatus.DONE]
        ours = {p.name for p in self.workers}
        live = [w for w in reply.workers if w.state == AgentState.CONNECTED]
        self.busy = [w.name for w in live if w.running and w.name in ours]
        return len(live)

    def due(self, k: int) -> bool:
        """Batch k goes once batch k-2 is done; the last ones wait for the manager kill."""
        ready = k < len(self.batches) and (k < KILL_BATCH or self.tally["manager restarts"] > 0)
        return ready and self.done >= sum(len(b) for b in self.batches[: max(k - 1, 0)])

    async def tick(self) -> float:
        if (now := time.monotonic()) > self.deadline:
            raise TimeoutError(f"{self.done}/{len(self.submitted)} done at the deadline")
        self.check_alive()
        await asyncio.sleep(0.1)
        return now

    async def run(self, workers: int) -> Reads:
        """Run the chaos (a timeout is noted, not raised), then read every result twice."""
        self.deadline = time.monotonic() + self.timeout
        await self.start_manager()
        for _ in range(workers):
            self.start_worker()
        async with Client("127.0.0.1", self.port, timeout=2.0) as client:
            try:
                while await self.poll(client) < workers:
                    await self.tick()
                self.started = time.monotonic()
                self.say(f"manager on 127.0.0.1:{self.port}, {workers} workers connected")
                await self._loop(client)
            except TimeoutError as exc:
                self.error = f"timed out: {exc}"
                self.say(self.error)
            self.elapsed = time.monotonic() - self.started
            first = await read_results(client, self.submitted)
            self.say(f"read all results; again after {QUIET}s quiet")
            await asyncio.sleep(QUIET)
            await self.poll(client)
            return first, await read_results(client, self.submitted)

    async def kill_manager(self, client: Client, batch: list[TaskSpec]) -> None:
        """SIGKILL, then restart on the same port and journal while submitting ``batch``."""
        assert self.manager is not None
        self.say(f"SIGKILL manager: {self.done} done, {len(self.busy)} workers busy")
        self.manager.kill()
        self.tally["manager restarts"] += 1
        await asyncio.gather(self.start_manager(), self.submit(client, batch))
        self.say("manager restarted; a batch was submitted while it was down")

    async def _loop(self, client: Client) -> None:
        sent, kill_at = 0, sum(len(b) for b in self.batches) * 2 // 5
        next_kill = next_log = time.monotonic() + self.kill_interval
        while sent < len(self.batches) or self.done < len(self.submitted):
            now = await self.tick()
            await self.poll(client)
            if self.due(sent):
                await self.submit(client, self.batches[sent])
                sent += 1
            idle = self.done >= len(self.submitted)  # kill it mid-task if we can, but never stall
            if sent == KILL_BATCH and self.done >= kill_at and (self.busy or idle):
                await self.kill_manager(client, self.batches[sent])
                sent += 1
            if self.tally["worker kills"] < self.max_kills and now >= next_kill and self.busy:
                victim = self.rng.choice(self.busy)
                self.kill_worker(victim)
                self.say(f"SIGKILL {victim}")
                next_kill = time.monotonic() + self.kill_interval * self.rng.uniform(0.5, 1.5)
            if now >= next_log:
                next_log = now + 2.0
                self.say(f"{self.done}/{len(self.submitted)} done")


async def read_results(client: Client, ids: list[str]) -> dict[str, TaskResult]:
    """The result of each id the manager reports exactly once, as done, with a result."""
    states: list[TaskState] = []
    for _ in range(10):
        try:
            states = await client.tasks(ids)
            break
        except ManagerUnavailable:
            await asyncio.sleep(0.5)
    seen = Counter(s.id for s in states)
    return {
        s.id: s.result
        for s in states
        if seen[s.id] == 1 and s.state == TaskStatus.DONE and s.result
    }


def summary(chaos: Chaos, reads: Reads, seed: int) -> dict[str, Any]:
    """Lost: not done with one result in the journal and in both reads.  Recorded twice:
    more than one journal row, or a result that differs between the reads and the journal."""
    with closing(sqlite3.connect(f"file:{chaos.logs / DB}?mode=ro", uri=True)) as con:
        table = con.execute("SELECT id, state, attempt, result FROM tasks").fetchall()
    rows = Counter(tid for tid, *_ in table)
    final = {
        tid: (state, attempt, None if blob is None else build(TaskResult, unpack(blob)))
        for tid, state, attempt, blob in table
    }
    lost, twice, failed = [], [], []
    attempts: Counter[int] = Counter()
    for tid in chaos.submitted:
        state, attempt, kept = final.get(tid, ("missing", 0, None))
        first, second = (r.get(tid) for r in reads)
        if state != TaskStatus.DONE or kept is None or first is None or second is None:
            lost.append(tid)
        if rows[tid] > 1 or (tid not in lost and not first == second == kept):
            twice.append(tid)
        if kept is not None:
            attempts[attempt] += 1
            if kept.status != ResultStatus.SUCCEEDED:
                failed.append(f"{tid}:{kept.status}")
    counts = chaos.by_epoch.values()
    return {
        "submitted": len(chaos.submitted),
        "recorded": len(chaos.submitted) - len(lost),
        "lost": len(lost),
        "recorded twice": len(twice),
        "not succeeded": len(failed),
        **{k: chaos.tally[k] for k in ("worker kills", "manager restarts", "submit retries")},
        "duplicates ignored": sum(c.get("duplicates", 0) for c in counts),
        "stale ignored": sum(c.get("stale", 0) for c in counts),
        "attempts": dict(sorted(attempts.items())),
        "elapsed s": round(chaos.elapsed, 2),
        "unexpected exits": chaos.unexpected,
        "error": chaos.error,
        "seed": seed,
        "examples": {"lost": lost[:10], "twice": twice[:10], "not succeeded": failed[:10]},
    }


def make_batches(count: int, rng: random.Random) -> list[list[TaskSpec]]:
    pay = [round(rng.uniform(0.005, 0.05), 3) for _ in range(count)]  # seconds of sleep
    specs = [TaskSpec(id=f"c{i:04d}", kind="sleep", payload=p) for i, p in enumerate(pay)]
    return [specs[k * count // BATCHES : (k + 1) * count // BATCHES] for k in range(BATCHES)]


@click.command(context_settings={"show_default": True})
@click.option("--tasks", type=click.IntRange(BATCHES), default=2000, help="Tasks to submit.")
@click.option("--workers", type=click.IntRange(1, 64), default=4, help="Workers kept running.")
@click.option("--seed", type=int, default=None, help="Random seed (default: a random one).")
@click.option("--kill-interval", type=click.FloatRange(0.05), default=0.5, help="Mean gap (s).")
@click.option("--max-kills", type=click.IntRange(0), default=50, help="Worker kills at most.")
@click.option("--timeout", type=click.FloatRange(1), default=300.0, help="Overall limit in s.")
@click.option("--keep-logs", is_flag=True, help="Keep the log directory also on success.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def main(
    tasks: int, workers: int, seed: int | None, keep_logs: bool, as_json: bool, **opts: Any
) -> None:
    """Kill workers and the manager while TASKS run; exit 1 if any is lost or recorded twice."""
    seed = random.randrange(1 << 32) if seed is None else seed
    logs = Path(tempfile.mkdtemp(prefix="taskmesh-chaos-"))
    rng = random.Random(seed)
    chaos = Chaos(logs, rng, make_batches(tasks, rng), **opts)  # kill_interval, max_kills, timeout
    chaos.say(f"seed {seed}; logs in {logs}")
    try:
        reads = asyncio.run(chaos.run(workers))
    except ProcessFailed as exc:
        chaos.say(f"{exc}\nlogs kept in {logs}")
        raise SystemExit(2) from None
    finally:
        chaos.stop_all()  # before the journal is read: nothing may write to it any more
    out = summary(chaos, reads, seed)
    ok = not (out["lost"] or out["recorded twice"] or out["error"])
    rows = [(k, json.dumps(v) if isinstance(v, dict | list) else v) for k, v in out.items()]
    click.echo(json.dumps(out, indent=2) if as_json else render(["", "value"], rows))
    if ok and not keep_logs:
        shutil.rmtree(logs, ignore_errors=True)
    else:
        chaos.say(f"logs kept in {logs}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
