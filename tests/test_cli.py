"""The CLI: bad arguments and bad task files get a clear message and a non-zero exit;
every setting has one environment variable that means one thing.

Argument parsing runs in-process through click's ``CliRunner``; the commands
that talk to a manager run against a real one.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from manager.config import ManagerConfig
from runtime.settings import specs
from taskmesh.cli import main
from taskmesh.config import ClientConfig, DemoConfig
from taskmesh.procs import spawn
from tests.conftest import FAST, Cluster
from worker.config import WorkerConfig


def taskmesh(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, env=env)


def helptext(*command: str) -> str:
    """``--help`` of a command, its lines joined (click wraps them to the terminal)."""
    shown = taskmesh(*command, "--help")
    assert shown.exit_code == 0, shown.output
    return " ".join(shown.stdout.split())


def assert_clean_error(result: Result, *needles: str) -> None:
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["worker", "--name", "x", "--skill", "11"], "--skill"),
        (["worker", "--name", "x", "--skill", "abc"], "--skill"),
        (["worker", "--name", "x"], "--skill"),
        (["worker", "--name", " ", "--skill", "3"], "--name"),
        (["worker", "--name", "x", "--skill", "3", "--capacity", "0"], "--capacity"),
        (["worker", "--name", "x", "--skill", "3", "--heartbeat-interval", "nan"], "interval"),
        (["manager", "--port", "70000"], "--port"),
        (["manager", "--policy", "random"], "--policy"),
        (["manager", "--host", "0.0.0.0"], "No such option"),
        (["status", "--port", "-1"], "--port"),
        (["status", "--timeout", "0"], "--timeout"),
        (["submit"], "FILE"),
        (["nonsense"], "No such command"),
    ],
)
def test_bad_arguments(args: list[str], needle: str) -> None:
    assert_clean_error(taskmesh(*args), needle)


def test_bad_environment_value_names_the_variable() -> None:
    result = taskmesh("worker", "--name", "x", env={"TASKMESH_SKILL": "11"})
    assert_clean_error(result, "TASKMESH_SKILL")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("not json", "not valid JSON"),
        ('{"a": 1}', "expected a JSON list"),
        ("[]", "empty"),
        ('[{"id": 1, "difficulty": 11}]', "task #1"),
        ('[{"id": 1}, {"id": 1}]', "duplicate id"),
        ('[{"id": 1, "difficulty": "hard"}]', "difficulty"),
        ('[{"id": 1, "colour": "red"}]', "unknown field"),
        ('[{"description": "no id"}]', "missing field 'id'"),
        ("[3]", "expected an object"),
    ],
)
def test_bad_task_files(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(content)
    assert_clean_error(taskmesh("submit", str(path), "--port", "1"), needle)


def test_missing_task_file() -> None:
    assert_clean_error(taskmesh("submit", "/nonexistent/tasks.json"), "No such file")


@pytest.mark.parametrize("config", [ManagerConfig, WorkerConfig])
def test_help_shows_every_options_environment_variable(config: type) -> None:
    command = "manager" if config is ManagerConfig else "worker"
    text = re.sub(r"\s+", " ", taskmesh(command, "--help").output)
    for spec in specs(config):
        if spec.meta.cli:
            assert f"env var: {spec.env}" in text, spec.env


def test_no_environment_variable_means_two_things() -> None:
    manager = {s.env: s for s in specs(ManagerConfig)}
    worker = {s.env: s for s in specs(WorkerConfig)}
    # The manager binds an address; a worker connects to one: two names.
    assert "TASKMESH_BIND" in manager
    assert "TASKMESH_HOST" not in manager
    assert "TASKMESH_HOST" in worker
    assert manager["TASKMESH_MANAGER_NAME"].name == worker["TASKMESH_WORKER_NAME"].name == "name"
    for env in manager.keys() & worker.keys():
        # a shared variable is the same setting: same field, same default
        assert manager[env].name == worker[env].name, env
        assert manager[env].default == worker[env].default, env


def test_readme_lists_every_setting_as_the_code_declares_it() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = taskmesh("settings").output.strip()
    assert table in readme  # regenerate with: taskmesh settings --update README.md
    for config in (ManagerConfig, WorkerConfig, ClientConfig, DemoConfig):
        for spec in specs(config):
            if spec.meta.cli:
                assert f"| `{spec.env}` | `{spec.flag}` |" in table, spec.env


def test_a_variable_read_differently_says_what_it_means_to_each() -> None:
    rows = {line.split(" | ")[0]: line for line in taskmesh("settings").output.splitlines()}
    port = rows["| `TASKMESH_PORT`"]
    assert "manager: Port to bind" in port
    assert "worker, client: The manager's port to connect to" in port
    scale = rows["| `TASKMESH_DEMO_TIME_SCALE`"]
    assert "| demo | 0.25 |" in scale


def test_no_manager_is_a_clear_error(unused_port: int) -> None:
    result = taskmesh("status", "--port", str(unused_port), "--timeout", "0.3")
    assert_clean_error(result, "no reply from the manager", str(unused_port))


def test_manager_port_in_use_is_a_clear_error(cluster: Cluster) -> None:
    cluster.manager()
    result = taskmesh("manager", "--port", str(cluster.port), "--db", ":memory:")
    assert_clean_error(result, "cannot listen", str(cluster.port))


def test_submit_wait_status_results(cluster: Cluster, tmp_path: Path) -> None:
    cluster.manager()
    cluster.worker("solo", 5, "--time-scale", "0.01")
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps([{"id": i, "difficulty": 1 + i % 5} for i in range(6)]))
    port = str(cluster.port)
    out = taskmesh("submit", str(tasks), "--wait", "--json", "--port", port, "--timeout", "30")
    assert out.exit_code == 0, out.output
    answer = json.loads(out.stdout)
    assert sorted(answer["accepted"]) == [str(i) for i in range(6)]
    states = answer["results"]
    assert sorted(s["id"] for s in states) == [str(i) for i in range(6)]
    assert all(s["state"] == "done" and s["result"]["success"] for s in states)
    # Submitting the same ids again is idempotent: nothing new is accepted.
    again = taskmesh("submit", "-", "--json", "--port", port, stdin=tasks.read_text())
    assert json.loads(again.stdout) == {"accepted": [], "known": [str(i) for i in range(6)]}
    status = json.loads(taskmesh("status", "--json", "--port", port).stdout)
    assert [w["name"] for w in status["workers"]] == ["solo"]
    assert status["tasks"]["done"] == 6
    assert status["tasks"]["succeeded"] == 6
    assert status["counters"]["journal_commits"] > 0
    table = taskmesh("results", "--port", port)
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split()[:2] == ["id", "description"]
    assert len(table.stdout.splitlines()) == 2 + 6
    human = taskmesh("status", "--port", port).stdout
    assert "solo" in human
    assert "policy best-fit" in human


def test_client_options_come_from_environment(cluster: Cluster) -> None:
    cluster.manager()
    result = taskmesh("status", "--json", env={"TASKMESH_PORT": str(cluster.port)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["manager"]["policy"] == "best-fit"


def test_status_check_needs_an_answer_and_workers(cluster: Cluster, unused_port: int) -> None:
    helped = helptext("status")
    assert "exit 0 when the manager answers with --min-workers workers connected" in helped
    assert "1 when fewer are, 4 when it does not answer" in helped
    assert "1 --check: fewer than --min-workers workers connected;" in helped
    assert "4 the manager refused or did not answer" in helped
    gone = taskmesh("status", "--check", "--port", str(unused_port), "--timeout", "0.3")
    assert_clean_error(gone, "no reply from the manager")
    assert gone.exit_code == 4  # as its help says
    cluster.manager()
    port = str(cluster.port)
    alone = taskmesh("status", "--check", "--port", port)
    assert_clean_error(alone, "fewer than 1 worker(s) connected")
    assert alone.exit_code == 1
    answering = taskmesh("status", "--check", "--min-workers", "0", "--port", port)
    assert answering.exit_code == 0, answering.output
    assert "0 worker(s) connected" in answering.stdout
    # A worker started without --name is named after its host (in a container: its id).
    cluster.procs.append(
        spawn("worker-unnamed", "worker", ["--port", port, "--skill", "2", *FAST], cluster.logs)
    )
    deadline = time.monotonic() + 20
    while (ok := taskmesh("status", "--check", "--port", port)).exit_code != 0:
        assert time.monotonic() < deadline, ok.output
        time.sleep(0.1)
    assert "1 worker(s) connected" in ok.stdout
    status = json.loads(taskmesh("status", "--json", "--port", port).stdout)
    assert [w["name"] for w in status["workers"]] == [socket.gethostname()]


def test_submit_help_lists_its_own_exit_codes() -> None:
    submit = helptext("submit")
    assert "Exit codes: 0 every task succeeded" in submit
    assert "3 gave up waiting (--timeout)" in submit
    assert "some id was refused" not in submit  # cancel's and retry's, not submit's
    assert "cancel, retry" not in submit
    for action in ("cancel", "retry"):
        assert "1 some id was refused" in helptext(action)
