"""The layers stay visible in the tree: no package imports one above it.

protocol < runtime < manager, worker < taskmesh < bench; manager and worker
never import each other; protocol uses no sockets and no asyncio.  These are
the rules each package's ``__init__`` docstring states; every import in every
module (type-checking ones too) is read with ``ast``, so a lazy import inside
a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "runtime", "manager", "worker", "taskmesh", "bench")

# What each package may import of the others (itself always).
ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "runtime": {"protocol"},
    "manager": {"protocol", "runtime"},
    "worker": {"protocol", "runtime"},
    "taskmesh": {"protocol", "runtime", "manager", "worker"},
    "bench": {"protocol", "runtime", "manager", "worker", "taskmesh"},
}
# Outside libraries a package must not use.
FORBIDDEN_LIBS: dict[str, set[str]] = {"protocol": {"zmq", "asyncio"}}


def imported(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (a module under ``root``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def violations(package: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    banned = (set(PACKAGES) - allowed) | FORBIDDEN_LIBS.get(package, set())
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in imported(path):
            if name.split(".")[0] in banned:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_a_layer_above_it(package: str) -> None:
    assert (ROOT / package / "__init__.py").is_file()
    assert violations(package) == []


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The walker would catch a violation: plain, from, relative, lazy and by name."""
    source = tmp_path / "protocol" / "sub"
    source.mkdir(parents=True)
    module = source / "mod.py"
    module.write_text(
        "import zmq\n"
        "from manager.admin import Admin\n"
        "from .. import codec\n"
        "def f():\n"
        "    import asyncio\n"
        "    importlib.import_module('worker.agent')\n"
    )
    names = [name for _, name in imported(module, tmp_path)]
    assert names == ["zmq", "manager.admin", "protocol", "asyncio", "worker.agent"]


@pytest.mark.parametrize(
    ("package", "phrase"),
    [
        ("protocol", "No sockets and no asyncio"),
        ("runtime", "May import ``protocol`` only"),
        ("manager", "May import ``protocol`` and ``runtime``; never ``worker``"),
        ("worker", "May import ``protocol`` and ``runtime``; never ``manager``"),
        ("taskmesh", "nothing of the manager or the worker (nor sqlite3 or click)"),
        ("taskmesh", "never ``bench``"),
        ("bench", "may import every other package"),
        ("bench", "none of them imports ``bench``"),
    ],
)
def test_each_package_states_the_rule_this_test_enforces(package: str, phrase: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text())) or ""
    assert phrase in " ".join(doc.split())


def test_a_script_that_imports_the_client_loads_no_manager_worker_or_cli() -> None:
    code = (
        "import sys\n"
        "from taskmesh import Client\n"
        "bad = {'manager', 'worker', 'bench', 'sqlite3', '_sqlite3', 'click'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
