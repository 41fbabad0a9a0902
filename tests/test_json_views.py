"""Every --json prints one documented shape per object: validated against taskmesh/schemas/."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
from click.testing import CliRunner
from referencing import Registry, Resource

from protocol import ErrorInfo, TaskResult, TaskState
from taskmesh.cli import main
from taskmesh.views import iso, task_view
from tests.conftest import Cluster
from tests.helpers.ops import HANDLERS, connected, wait_until

SCHEMAS = Path(__file__).resolve().parent.parent / "taskmesh" / "schemas"


def validator(name: str) -> jsonschema.Draft202012Validator:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        doc = json.loads(path.read_text())
        resources.append((path.name, Resource.from_contents(doc)))
        resources.append((doc["$id"], Resource.from_contents(doc)))
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = json.loads((SCHEMAS / name).read_text())
    return jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=jsonschema.FormatChecker()
    )


def test_the_schemas_are_valid_schemas() -> None:
    for path in SCHEMAS.glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_a_failed_task_view_has_iso_times_and_its_error() -> None:
    result = TaskResult(
        task_id="t",
        attempt=2,
        worker="W",
        worker_id="w-1",
        success=False,
        status="failed",
        error=ErrorInfo(type="TaskFailed", message="no"),
        started=1_800_000_000.25,
        finished=1_800_000_001.5,
        skill=3,
    )
    view = task_view(TaskState(id="t", state="done", attempt=2, difficulty=4, result=result))
    validator("task.json").validate(view)
    assert view["result"]["started"] == "2027-01-15T08:00:00.250+00:00"
    assert datetime.fromisoformat(view["result"]["finished"]).timestamp() == 1_800_000_001.5
    assert view["result"]["seconds"] == 1.25
    assert view["result"]["error"] == {"type": "TaskFailed", "message": "no", "traceback": ""}
    assert iso(0.0) is None


def cli(*args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def test_every_json_output_matches_its_schema(cluster: Cluster, tmp_path: Path) -> None:
    cluster.manager()
    cluster.worker("solo", 5, *HANDLERS, "--capacity", "4")
    wait_until(connected(cluster, 1), what="worker")
    port = ("--port", str(cluster.port))
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps([{"id": "a", "kind": "noop"}, {"id": "b", "kind": "fail"}]))
    submitted = cli("submit", str(tasks), "--wait", *port)
    validator("submission.json").validate(submitted)
    assert {t["id"]: t["result"]["status"] for t in submitted["results"]} == {
        "a": "succeeded",
        "b": "error",
    }
    for task in cli("results", "a", "b", "nope", *port):
        validator("task.json").validate(task)
    status = cli("status", *port)
    validator("status.json").validate(status)
    assert status["tasks"]["done"] == 2
    assert "req" not in json.dumps(status)
    validator("submission.json").validate(cli("submit", str(tasks), *port))
