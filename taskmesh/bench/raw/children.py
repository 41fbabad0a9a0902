"""Child processes and small helpers shared by the baselines (stdlib, zmq and msgpack only)."""

from __future__ import annotations

import json
import math
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import zmq

ROOT = Path(__file__).resolve().parents[2]
LOCAL = "tcp://127.0.0.1"
pack = msgpack.Packer(use_bin_type=True).pack


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


@contextmanager
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list to start child processes into; all of them are gone when the block ends."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def start(
    procs: list[subprocess.Popen[bytes]], role: str, *args: object
) -> subprocess.Popen[bytes]:
    """Run ``python -m taskmesh.bench.raw --child role args...``; its stdout is a pipe."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "taskmesh.bench.raw", "--child", role, *map(str, args)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    procs.append(proc)
    return proc


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> Any:
    """The next JSON line a child prints, within ``timeout`` seconds."""
    assert proc.stdout is not None
    if not select.select([proc.stdout], [], [], timeout)[0]:
        raise TimeoutError(f"child {proc.args!r} said nothing within {timeout}s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"child {proc.args!r} exited with {proc.wait()}")
    return json.loads(line)


def check_alive(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is not None:
            raise RuntimeError(f"child {proc.args!r} exited with {proc.returncode}")


def remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the baseline did not finish in time")
    return left


def positive(**values: float) -> None:
    """Refuse sizes that would make a baseline meaningless (no tasks, no workers, no time)."""
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def bounded(lifetime: float) -> Callable[[], bool]:
    """A check that turns false after ``lifetime`` seconds or once the parent is gone."""
    parent = os.getppid()
    stop_at = time.monotonic() + lifetime
    return lambda: time.monotonic() < stop_at and os.getppid() == parent


def drain(sock: zmq.Socket[bytes]) -> list[list[bytes]]:
    """Every message waiting on ``sock``, without blocking."""
    out: list[list[bytes]] = []
    while True:
        try:
            out.append(sock.recv_multipart(zmq.NOBLOCK))
        except zmq.Again:
            return out
