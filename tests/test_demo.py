"""``taskmesh demo`` end to end: separate processes, three distinct tasks, all succeed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (read from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def test_demo_runs_three_distinct_tasks_on_three_processes() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "taskmesh", "demo", "--json", "--time-scale", "0.1"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    assert "tasks done" not in proc.stderr  # --json: no progress
    summary = json.loads(proc.stdout)
    tasks = summary["tasks"]
    assert [t["id"] for t in tasks] == ["1", "2", "3"]
    assert [t["description"] for t in tasks] == [
        "Simple calculation",
        "Data analysis",
        "Machine learning model training",
    ]
    workers = {t["id"]: t["result"]["worker"] for t in tasks}
    assert workers == {"1": "Junior", "2": "Intermediate", "3": "Senior"}
    assert all(t["result"]["success"] for t in tasks)
    assert summary["succeeded"] == 3
    assert summary["success_rate"] == 1.0
    # Each task slept difficulty x time-scale seconds in its worker.
    for t in tasks:
        assert t["result"]["seconds"] >= t["difficulty"] * 0.1 * 0.9
    procs = {p["name"]: p["pid"] for p in summary["processes"]}
    assert sorted(procs) == ["intermediate", "junior", "manager", "senior"]
    assert len(set(procs.values())) == 4  # each agent its own OS process
    for pid in procs.values():
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived the demo"
    assert children_of(os.getpid()) == []


def test_demo_table_output() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "taskmesh", "demo", "--time-scale", "0.05"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "description", "difficulty", "worker"]
    rows = [line.split() for line in lines[2:5]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert "success rate: 3/3 (100%)" in proc.stdout
    # Not a terminal: the wait shows as plain lines on stderr, from none done to all done.
    shown = [line for line in proc.stderr.splitlines() if " tasks done, " in line]
    assert shown[0].startswith("0/3 tasks done, 0 failed")
    assert shown[-1].startswith("3/3 tasks done, 0 failed")
    assert len(shown) == len(set(shown))  # the last line is not written twice
    assert "\r" not in proc.stderr
