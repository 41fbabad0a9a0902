"""Reading task files: JSON in, validated TaskSpecs or a clear TaskFileError out."""

from __future__ import annotations

import json

import pytest

from protocol import TaskSpec
from taskmesh.taskfile import TaskFileError, parse_tasks

SEED = [
    {"id": 1, "description": "Simple calculation", "difficulty": 2},
    {"id": 2, "description": "Data analysis", "difficulty": 5},
    {"id": 3, "description": "Complex algorithm", "difficulty": 8},
]


def test_seed_list_parses_with_int_ids_as_str() -> None:
    specs = parse_tasks(json.dumps(SEED))
    assert specs == [
        TaskSpec(id="1", description="Simple calculation", difficulty=2),
        TaskSpec(id="2", description="Data analysis", difficulty=5),
        TaskSpec(id="3", description="Complex algorithm", difficulty=8),
    ]


def test_tasks_key_wrapper_is_accepted() -> None:
    assert parse_tasks(json.dumps({"tasks": SEED})) == parse_tasks(json.dumps(SEED))


def test_every_field_is_read() -> None:
    text = json.dumps(
        [
            {
                "id": "render-1",
                "description": "frame",
                "difficulty": 10,
                "kind": "render",
                "payload": {"frame": 1, "layers": ["a", "b"]},
                "timeout": 2.5,
                "max_attempts": 4,
            }
        ]
    )
    assert parse_tasks(text) == [
        TaskSpec(
            id="render-1",
            description="frame",
            difficulty=10,
            kind="render",
            payload={"frame": 1, "layers": ["a", "b"]},
            timeout=2.5,
            max_attempts=4,
        )
    ]


def test_defaults_apply_to_missing_optional_fields() -> None:
    [only] = parse_tasks('[{"id": "a"}]')
    assert only == TaskSpec(id="a")
    assert (only.difficulty, only.kind, only.timeout, only.max_attempts) == (
        1,
        "simulate",
        None,
        None,
    )


def test_int_timeout_is_accepted() -> None:
    [only] = parse_tasks('[{"id": "a", "timeout": 3}]')
    assert only.timeout == 3.0


def test_order_is_preserved() -> None:
    ids = [f"t{i}" for i in range(20)]
    specs = parse_tasks(json.dumps([{"id": i} for i in ids]))
    assert [s.id for s in specs] == ids


ERRORS: list[tuple[str, str, list[str]]] = [
    ("invalid-json", "[{", ["not valid JSON"]),
    ("empty-text", "", ["not valid JSON"]),
    ("not-a-list-object", '{"id": "a"}', ["expected a JSON list", "dict"]),
    ("not-a-list-number", "5", ["expected a JSON list", "int"]),
    ("tasks-not-a-list", '{"tasks": {"id": "a"}}', ["expected a JSON list"]),
    ("empty-list", "[]", ["empty"]),
    ("empty-tasks", '{"tasks": []}', ["empty"]),
    ("item-not-object", '[{"id": "a"}, 7]', ["task #2", "expected an object", "int"]),
    ("item-is-list", '[["a", 2]]', ["task #1", "expected an object", "list"]),
    ("missing-id", '[{"id": "a"}, {"description": "x"}]', ["task #2", "missing", "id"]),
    ("empty-id", '[{"id": ""}]', ["task #1", "id"]),
    ("bool-id", '[{"id": true}]', ["task #1", "id"]),
    ("float-id", '[{"id": 1.5}]', ["task #1", "id"]),
    ("difficulty-0", '[{"id": "a", "difficulty": 0}]', ["task #1", "difficulty"]),
    ("difficulty-11", '[{"id": "a"}, {"id": "b", "difficulty": 11}]', ["task #2", "difficulty"]),
    ("difficulty-str", '[{"id": "a", "difficulty": "5"}]', ["task #1", "difficulty"]),
    ("difficulty-float", '[{"id": "a", "difficulty": 5.0}]', ["task #1", "difficulty"]),
    ("difficulty-null", '[{"id": "a", "difficulty": null}]', ["task #1", "difficulty"]),
    ("unknown-field", '[{"id": "a", "priority": 1}]', ["task #1", "unknown", "priority"]),
    ("negative-timeout", '[{"id": "a", "timeout": -1}]', ["task #1", "timeout"]),
    ("zero-max-attempts", '[{"id": "a", "max_attempts": 0}]', ["task #1", "max_attempts"]),
    ("empty-kind", '[{"id": "a", "kind": ""}]', ["task #1", "kind"]),
    ("duplicate-id", '[{"id": "a"}, {"id": "b"}, {"id": "a"}]', ["task #3", "duplicate", "'a'"]),
    ("duplicate-int-and-str-id", '[{"id": 1}, {"id": "1"}]', ["task #2", "duplicate", "'1'"]),
]


@pytest.mark.parametrize(
    ("text", "fragments"), [(t, f) for _, t, f in ERRORS], ids=[n for n, _, _ in ERRORS]
)
def test_bad_task_file_raises_clear_error(text: str, fragments: list[str]) -> None:
    with pytest.raises(TaskFileError) as err:
        parse_tasks(text, source="jobs.json")
    message = str(err.value)
    assert message.startswith("jobs.json: ")
    for fragment in fragments:
        assert fragment in message


def test_default_source_name_appears_in_errors() -> None:
    with pytest.raises(TaskFileError, match=r"^<tasks>: "):
        parse_tasks("[]")


def test_task_file_error_is_a_value_error() -> None:
    # CLI code that catches ValueError for bad input also catches task file errors.
    assert issubclass(TaskFileError, ValueError)
