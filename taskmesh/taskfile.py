"""Reading task files: a JSON list of task objects (or ``{"tasks": [...]}``)."""

from __future__ import annotations

import json
from typing import Any

from protocol import ProtocolError, TaskSpec, build


class TaskFileError(ValueError):
    """A task file that cannot be used, with the place and the reason."""


def parse_tasks(text: str, source: str = "<tasks>") -> list[TaskSpec]:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskFileError(f"{source}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and "tasks" in data:
        data = data["tasks"]
    if not isinstance(data, list):
        raise TaskFileError(f"{source}: expected a JSON list of tasks, got {type(data).__name__}")
    if not data:
        raise TaskFileError(f"{source}: the task list is empty")
    specs: list[TaskSpec] = []
    seen: set[str] = set()
    for index, item in enumerate(data):
        where = f"{source}: task #{index + 1}"
        if not isinstance(item, dict):
            raise TaskFileError(f"{where}: expected an object, got {type(item).__name__}")
        item = dict(item)
        if isinstance(item.get("id"), int) and not isinstance(item.get("id"), bool):
            item["id"] = str(item["id"])
        try:
            spec = build(TaskSpec, item)
        except ProtocolError as exc:
            raise TaskFileError(f"{where}: {exc}") from None
        if spec.id in seen:
            raise TaskFileError(f"{where}: duplicate id {spec.id!r}")
        seen.add(spec.id)
        specs.append(spec)
    return specs
