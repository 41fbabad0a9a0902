"""Each state and each constant is spelled once, where it is declared.

States are the StrEnums of ``protocol.states``: code compares with and indexes
by those, never by the bare string, so a renamed state cannot leave a
forgotten comparison behind.  A module-level constant is defined in one
module and imported where it is used, so two copies cannot drift apart.
Read from the source with ``ast``.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from protocol import AgentState, ResultStatus, TaskFilter, TaskStatus

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "runtime", "manager", "worker", "taskmesh", "bench")

STATES = {str(s) for e in (TaskStatus, ResultStatus, AgentState, TaskFilter) for s in e} - {""}
# Also names of fields ("failed" counts, "error" details, a task's "timeout"): as a
# subscript or a .get() key they name the field, so only comparisons are checked.
FIELD_NAMES = {"failed", "error", "timeout"}
# Private names that mean different things in their modules.
PRIVATE_HOMONYMS = {"_SCALARS", "_SCHEMA"}


def modules() -> list[tuple[str, ast.Module]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found.append((path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())))
    return found


def strings(node: ast.expr) -> list[str]:
    """The string constants ``node`` is, or holds (a tuple, list or set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [s for elt in node.elts for s in strings(elt)]
    return []


def bare_states(tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            found += [(node.lineno, s) for e in node.comparators for s in strings(e) if s in STATES]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            found += [(node.lineno, s) for s in strings(node.slice) if s in STATES - FIELD_NAMES]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            found += [(node.lineno, s) for s in strings(node.args[0]) if s in STATES - FIELD_NAMES]
    return found


def test_states_are_compared_as_enum_members_not_bare_strings() -> None:
    bad = [
        f"{path}:{line} {value!r}"
        for path, tree in modules()
        if path != "protocol/states.py"
        for line, value in bare_states(tree)
    ]
    assert bad == []


def test_the_state_check_would_see_a_bare_state() -> None:
    tree = ast.parse(
        "if s == 'done' or s in ('', 'queued'): pass\n"
        "n = counts['succeeded'] + counts.get('cancelled', 0) + info['failed']\n"
        "ok = s == TaskStatus.DONE\n"
    )
    assert bare_states(tree) == [(1, "done"), (1, "queued"), (2, "succeeded"), (2, "cancelled")]


def test_every_module_level_constant_is_defined_once() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path, tree in modules():
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and re.fullmatch(r"_?[A-Z][A-Z0-9_]+", name.id):
                        where[name.id].append(path)
    twice = {
        name: paths
        for name, paths in where.items()
        if len(paths) > 1 and name not in PRIVATE_HOMONYMS
    }
    assert twice == {}
