"""The Makefile's targets do what README says they do (``make -n`` prints a recipe
without running it; ``-o`` keeps the venv stamp from being rebuilt)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["make", "--no-print-directory", "-o", ".venv/.installed", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_make_test_browser_runs_the_browser_tests() -> None:
    planned = make("-n", "test-browser", "CHROMIUM=/usr/bin/true")
    assert planned.returncode == 0, planned.stderr
    run = [line for line in planned.stdout.splitlines() if "pytest" in line]
    assert len(run) == 1, planned.stdout
    # The browser marker is asked for (pyproject's addopts deselect it), over tests/browser.
    assert "-m browser" in run[0]
    assert run[0].split()[-1] == "tests/browser"
    assert "CHROMIUM=" in run[0]


def test_make_test_browser_fails_clearly_without_chromium() -> None:
    missing = make("test-browser", "CHROMIUM=/nonexistent/chromium")
    assert missing.returncode != 0
    assert "Chromium not found" in missing.stderr
    assert "apt-get install chromium" in missing.stderr
    assert "pytest" not in missing.stdout  # stopped before running anything
