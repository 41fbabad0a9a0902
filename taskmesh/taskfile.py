"""Reading task files: a JSON list of task objects (or ``{"tasks": [...]}``)."""

from __future__ import annotations

import json
from typing import Any

from protocol import MAX_ITEM_BYTES, ProtocolError, TaskSpec, build
from protocol.codec import encoded_size


class TaskFileError(ValueError):
    """A task file that cannot be used, with the place and the reason."""


def read_tasks(data: bytes, source: str = "<tasks>") -> list[TaskSpec]:
    """``parse_tasks`` of a file's bytes (UTF-8)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskFileError(
            f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    return parse_tasks(text, source)


def parse_tasks(text: str, source: str = "<tasks>") -> list[TaskSpec]:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskFileError(f"{source}: not valid JSON: {exc}") from None
    except RecursionError:
        raise TaskFileError(f"{source}: JSON nested too deeply") from None
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
            size = encoded_size(spec)
        except ProtocolError as exc:
            raise TaskFileError(f"{where}: {str(exc)[:300]}") from None
        if size > MAX_ITEM_BYTES:
            raise TaskFileError(
                f"{where} ({spec.id[:64]!r}): {size:,} bytes encoded, over the "
                f"{MAX_ITEM_BYTES:,}-byte limit "
                "of one task; pass large data by reference (a path or URL in the payload)"
            )
        if spec.id in seen:
            raise TaskFileError(f"{where}: duplicate id {spec.id!r}")
        seen.add(spec.id)
        specs.append(spec)
    return specs
