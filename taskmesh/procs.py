"""Starting and stopping taskmesh processes (used by the demo, the tests and the benchmarks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runtime.sockets import port_of


class ProcessFailed(RuntimeError):
    """A process died or did not become ready; the message ends with its log."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, tail: int = 4000) -> str:
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(errors="replace")
        return text[-tail:]

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        code = self.popen.wait()
        self._log.close()
        return code

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
        self.popen.wait()


def spawn(
    name: str, module: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None
) -> Proc:
    """Run ``python -m module args`` with its output in ``log_dir/name.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = log_path.open("ab")
    full_env = {**os.environ, **(env or {})}
    popen = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=full_env,
    )
    return Proc(name=name, popen=popen, log_path=log_path, _log=log)


def start_manager(
    name: str, args: list[str], log_dir: Path, port: int = 0, env: dict[str, str] | None = None
) -> tuple[Proc, int]:
    """Start ``python -m manager`` on ``port`` (0: any free one); return it and its bound port.

    A manager that does not become ready is stopped before the error is raised.
    """
    ready = log_dir / f"{name}.ready.json"
    ready.unlink(missing_ok=True)
    args = ["--port", str(port), "--ready-file", str(ready), *args]
    proc = spawn(name, "manager", args, log_dir, env)
    try:
        return proc, port_of(wait_ready(proc, ready)["endpoint"])
    except ProcessFailed:
        proc.stop()
        raise


def wait_ready(proc: Proc, ready_file: Path, timeout: float = 15.0) -> dict[str, Any]:
    """Wait for the manager's ready file; fail fast if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_file.exists():
            text = ready_file.read_text()
            if text.endswith("\n"):
                info: dict[str, Any] = json.loads(text)
                return info
        if not proc.alive():
            raise ProcessFailed(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log()}")
        time.sleep(0.02)
    raise ProcessFailed(f"{proc.name} not ready within {timeout}s:\n{proc.log()}")
