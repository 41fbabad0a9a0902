"""Driving the compose cluster and the host's ``taskmesh`` CLI, for scenario.py.

``docker compose`` (COMPOSE, PROJECT) through ``compose``, the operator's
``taskmesh ... --json`` through the published ROUTER port (TASKMESH,
TASKMESH_PUBLISH_PORT) through ``taskmesh``, and the bounded waits and
checks the phases share.  A check that does not hold raises ``Failed``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

COMPOSE = os.environ["COMPOSE"]
PROJECT = os.environ["PROJECT"]
TASKMESH = os.environ["TASKMESH"]
PORT = os.environ["TASKMESH_PUBLISH_PORT"]
REPO = Path(__file__).resolve().parents[2]
TMP = Path(tempfile.mkdtemp(prefix="taskmesh-compose-"))


class Failed(Exception):
    """A check a user would make did not hold."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise Failed(what)


def run(cmd: Sequence[str], timeout: float = 120, stdin: str | None = None) -> str:
    """Run ``cmd``; its stdout, or ``Failed`` with its output when it exits non-zero."""
    proc = subprocess.run(
        list(cmd), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise Failed(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def compose(*args: str, timeout: float = 180, stdin: str | None = None) -> str:
    cmd = [COMPOSE, "-f", str(REPO / "docker-compose.yml"), "-p", PROJECT, *args]
    return run(cmd, timeout, stdin)


#: The operator's key pair and the manager's public key, read from the `keys` volume.
KEYS = ["--secret-key", str(TMP / "operator.key_secret"), "--manager-key", str(TMP / "manager.key")]


def taskmesh(*args: str, timeout: float = 60) -> Any:
    """``taskmesh ARGS --json`` against the published ROUTER port (as the operator), parsed."""
    cmd = [TASKMESH, *args, "--json", "--port", PORT, "--log-level", "ERROR", *KEYS]
    return json.loads(run(cmd, timeout))


def fetch_keys() -> None:
    """Copy the operator's secret key and the manager's public key out of the volume,
    as the README tells a user to."""
    for name, path in (("operator.key_secret", "operators/"), ("manager.key", "")):
        read = ["run", "--rm", "-T", "--no-deps", "--entrypoint", "cat", "keys"]
        data = compose(*read, f"/keys/{path}{name}", timeout=60)
        target = TMP / name
        target.write_text(data)
        target.chmod(0o600)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except Failed:
            value = None  # e.g. the manager is restarting
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.5)


def connected(count: int) -> Callable[[], list[dict[str, Any]] | None]:
    """A probe: the connected workers once there are exactly ``count``."""

    def probe() -> list[dict[str, Any]] | None:
        workers = [w for w in taskmesh("status")["workers"] if w["state"] == "connected"]
        return workers if len(workers) == count else None

    return probe


def write_tasks(name: str, tasks: list[dict[str, Any]]) -> Path:
    path = TMP / f"{name}.json"
    path.write_text(json.dumps(tasks))
    return path


def submit(path: Path) -> None:
    reply = taskmesh("submit", str(path))
    check(not reply["known"], f"{path.name}: ids already known: {reply['known'][:5]}")


def wait_done(path: Path, timeout: float = 240) -> list[dict[str, Any]]:
    """Every task of ``path`` done; resubmitting known ids only waits for them.

    Retried: the first request may reach a manager that is still restarting.
    """
    for attempt in range(3):
        try:
            answer: dict[str, Any] = taskmesh(
                "submit", str(path), "--wait", "--timeout", str(timeout), timeout=timeout + 30
            )
            states: list[dict[str, Any]] = answer["results"]
            return states
        except Failed:
            if attempt == 2:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


def assert_succeeded_once(path: Path, states: list[dict[str, Any]]) -> None:
    ids = [str(t["id"]) for t in json.loads(path.read_text())]
    check([s["id"] for s in states] == ids, f"{path.name}: results are not one per task")
    bad = [s for s in states if not (s["state"] == "done" and s["result"]["success"])]
    check(not bad, f"{path.name}: {len(bad)} task(s) did not succeed, e.g. {bad[:1]}")
    journal = taskmesh("results")
    seen = [s["id"] for s in journal]
    check(len(seen) == len(set(seen)), "the journal lists a task twice")
    check(set(ids) <= set(seen), f"{path.name}: tasks missing from the journal")


def container_of(service: str) -> str:
    ids = compose("ps", "-q", service).split()
    check(len(ids) == 1, f"{service}: expected one container, got {ids}")
    return ids[0]


def inspect(container: str, fmt: str) -> str:
    return run(["docker", "inspect", "-f", fmt, container]).strip()


def crash(service: str) -> None:
    """SIGKILL the worker's process from the host, as the OOM killer would.

    (``docker kill`` counts as a deliberate stop, after which docker never
    restarts a container; a crash must be restarted by the restart policy.)
    """
    init_pid = inspect(container_of(service), "{{.State.Pid}}")
    children = Path(f"/proc/{init_pid}/task/{init_pid}/children").read_text().split()
    check(len(children) == 1, f"{service}: expected docker-init's one child, got {children}")
    os.kill(int(children[0]), 9)


def running_on(name: str) -> Callable[[], bool]:
    def probe() -> bool:
        workers = taskmesh("status")["workers"]
        return any(w["name"] == name and w["running"] > 0 for w in workers)

    return probe
