"""Bad input through the real commands: one line on stderr, a non-zero exit, no traceback.

Argument and task-file errors run in-process through click's ``CliRunner``.
A process of its own (``python -m taskmesh ...``, as a user would run it) only
where the process matters: a 50 MB task file, and a manager or worker that
gets as far as starting (opening its journal, reading its CURVE keys) before
it fails.  None of them gets as far as talking to a manager.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime.keys import generate
from taskmesh.cli import main


@dataclass
class Outcome:
    """What a user sees of a command: its exit code and what it printed."""

    returncode: int | None
    stdout: str
    stderr: str


def taskmesh(*args: str) -> Outcome:
    """``python -m taskmesh ARGS`` in a process of its own."""
    proc = subprocess.run(
        [sys.executable, "-m", "taskmesh", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def invoke(*args: str) -> Outcome:
    """The same command parsed and run in this process."""
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr)


def assert_one_line_error(proc: Outcome, *needles: str) -> None:
    assert proc.returncode not in (0, None), proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # click's usage hint may come first for an option error: "Usage: ..." and "Try ...".
    hints = [line for line in lines if line.startswith(("Usage: ", "Try '"))]
    (error,) = [line for line in lines if line not in hints]
    assert error.startswith("Error:"), error
    for needle in needles:
        assert needle in error, error


SUBMIT = ("--port", "1", "--timeout", "0.5")  # nothing listens on port 1


def submit(path: Path) -> Outcome:
    return invoke("submit", str(path), *SUBMIT)


def test_a_50_mb_payload(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps([{"id": "big", "payload": "x" * (50 << 20)}]))
    proc = taskmesh("submit", str(path), *SUBMIT)  # a real process reads and refuses 50 MB
    assert_one_line_error(proc, "task #1", "limit", "by reference")


def test_json_nested_5000_deep(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 5000 + "]" * 5000)
    assert_one_line_error(submit(path), "nested too deeply")


def test_a_payload_nested_deeper_than_the_wire_allows(tmp_path: Path) -> None:
    path = tmp_path / "deep-payload.json"
    path.write_text('[{"id": 1, "payload": ' + "[" * 100 + "]" * 100 + "}]")
    assert_one_line_error(submit(path), "task #1", "nested deeper")


def test_a_task_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"id": "caf\u00e9"}]'.encode("latin-1"))
    assert_one_line_error(submit(path), "not UTF-8", "0xe9")


@pytest.mark.parametrize("where", ["missing", "directory", "proc"])
def test_manager_db_that_cannot_be_a_journal(tmp_path: Path, where: str) -> None:
    db = {
        "missing": str(tmp_path / "no" / "such" / "dir" / "taskmesh.db"),
        "directory": str(tmp_path),
        "proc": "/proc/taskmesh.db",
    }[where]
    proc = taskmesh("manager", "--port", "0", "--db", db)
    assert_one_line_error(proc, "cannot use", "as the journal")


def test_worker_with_an_empty_name() -> None:
    assert_one_line_error(invoke("worker", "--name", "", "--skill", "3"), "--name")


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    generate("manager", tmp_path)
    generate("w", tmp_path / "workers")
    (tmp_path / "junk.key").write_text("public-key = not a key\n")
    return tmp_path


def with_keys(keys: Path, args: list[str]) -> list[str]:
    return [*(arg.replace("{k}", str(keys)) for arg in args), "--port", "0"]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["manager", "--worker-keys", "{k}/workers"], ["--secret-key"]),
        (["worker", "--skill", "1", "--secret-key", "{k}/workers/w.key_secret"], ["together"]),
        (["status", "--manager-key", "{k}/manager.key"], ["together"]),
    ],
)
def test_curve_options_that_do_not_go_together(
    keys: Path, args: list[str], needles: list[str]
) -> None:
    assert_one_line_error(invoke(*with_keys(keys, args)), *needles)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["manager", "--secret-key", "{k}/nope.key_secret"], ["CURVE keys", "not a key file"]),
        (["manager", "--secret-key", "{k}/manager.key"], ["CURVE keys", "no secret key"]),
        (
            ["manager", "--secret-key", "{k}/manager.key_secret", "--worker-keys", "{k}/nope"],
            ["CURVE keys", "not a directory"],
        ),
        (
            [
                *("worker", "--skill", "1", "--secret-key", "{k}/workers/w.key_secret"),
                *("--manager-key", "{k}/junk.key"),
            ],
            ["CURVE keys", "junk.key"],
        ),
    ],
)
def test_curve_keys_a_starting_agent_cannot_use(
    keys: Path, args: list[str], needles: list[str]
) -> None:
    assert_one_line_error(taskmesh(*with_keys(keys, args)), *needles)


def test_keys_are_never_overwritten(keys: Path) -> None:
    before = (keys / "manager.key_secret").read_bytes()
    proc = invoke("keys", "generate", "manager", "--dir", str(keys))
    assert_one_line_error(proc, "exists")
    assert (keys / "manager.key_secret").read_bytes() == before


def test_keys_generate_writes_a_pair_the_secret_for_its_owner_only(tmp_path: Path) -> None:
    proc = invoke("keys", "generate", "alice", "--dir", str(tmp_path / "k"))
    assert proc.returncode == 0, proc.stderr
    public, secret = tmp_path / "k" / "alice.key", tmp_path / "k" / "alice.key_secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert "secret-key" not in public.read_text()
    assert "secret-key" in secret.read_text()


def test_a_handlers_module_that_raises_while_imported(tmp_path: Path) -> None:
    (tmp_path / "broken_kinds.py").write_text("raise ValueError('no config for kinds')\n")
    proc = taskmesh(
        *("worker", "--skill", "1", "--port", "1", "--app-dir", str(tmp_path)),
        *("--handlers", "broken_kinds"),
    )
    assert_one_line_error(proc, "cannot load handlers", "ValueError", "no config for kinds")


def test_a_value_error_while_serving_is_not_blamed_on_the_handlers(
    keys: Path, tmp_path: Path
) -> None:
    """The handlers load; then serving raises (an unusable key file is a ValueError)."""
    (tmp_path / "good_kinds.py").write_text("HANDLERS = {'nothing': lambda task, ctx: None}\n")
    proc = taskmesh(
        *("worker", "--skill", "1", "--port", "1", "--app-dir", str(tmp_path)),
        *("--handlers", "good_kinds", "--secret-key", f"{keys}/workers/w.key_secret"),
        *("--manager-key", f"{keys}/junk.key"),
    )
    assert_one_line_error(proc, "CURVE keys", "junk.key")
    assert "handlers" not in proc.stderr
