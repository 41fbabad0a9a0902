"""``taskmesh bench`` runs end to end and its figures agree with each other (never its speed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskmesh.bench.load import Load, specs
from taskmesh.cli import main
from tests.conftest import Cluster
from tests.helpers.ops import connected, wait_until

pytestmark = pytest.mark.slow

KEYS = {
    "tasks_per_s",
    "raw_tasks_per_s",
    "ratio",
    "rtt_p50_us",
    "rtt_p99_us",
    "raw_rtt_p50_us",
    "manager_us_per_task",
    "worker_us_per_task",
    "manager_rss_growth_mb_per_100k",
    "tasks",
    "workers",
    "journal",
}


def bench(*args: str) -> object:
    result = CliRunner().invoke(main, ["bench", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_small_run_records_every_task_and_its_figures_agree() -> None:
    row = bench("--tasks", "600", "--trips", "20", "--journal", "file", "--capacity", "20")
    assert isinstance(row, dict)
    assert row.keys() >= KEYS
    assert (row["tasks"], row["workers"], row["journal"]) == (600, 2, "file")
    assert row["statuses"] == {"succeeded": 600}  # every task recorded, none twice or failed
    assert row["tasks_per_s"] > 0
    assert row["raw_tasks_per_s"] > 0
    assert row["ratio"] == pytest.approx(row["tasks_per_s"] / row["raw_tasks_per_s"], rel=0.01)
    assert 0 < row["rtt_p50_us"] <= row["rtt_p95_us"] <= row["rtt_p99_us"]
    assert row["manager_us_per_task"] > 0
    assert row["worker_us_per_task"] > 0
    assert row["manager_peak_rss_mb"] > 0
    each = row["per_worker"]
    assert [w["name"] for w in each] == ["w0", "w1"]
    assert all(w["us_per_task"] > 0 and w["peak_rss_mb"] > 0 for w in each)
    assert sum(w["us_per_task"] for w in each) == pytest.approx(row["worker_us_per_task"], abs=0.02)
    assert max(w["peak_rss_mb"] for w in each) == pytest.approx(row["worker_peak_rss_mb"], abs=0.1)


def test_a_sweep_writes_one_row_per_value(tmp_path: Path) -> None:
    rows = bench(
        "--tasks", "300", "--trips", "0", "--no-raw", "--sweep", "workers=1,2",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert isinstance(rows, list)
    assert [r["workers"] for r in rows] == [1, 2]
    assert all(r["statuses"] == {"succeeded": 300} for r in rows)
    assert all(r["ratio"] is None for r in rows)  # no baseline measured: no ratio
    written = json.loads((tmp_path / "sweep-workers.json").read_text())
    assert [r["workers"] for r in written] == [1, 2]
    assert "tasks/s" in (tmp_path / "sweep-workers.txt").read_text()


def test_bad_bench_arguments_are_clear_errors() -> None:
    for args, needle in (
        (["--sweep", "colour=1,2"], "NAME=V1,V2"),
        (["--sweep", "workers=a,b"], "workers='a'"),
        (["--difficulty", "11"], "1-10"),
        (["--journal", "tape"], "--journal"),
        (["--kind", "echo,paint"], "'paint' is not a built-in kind (echo, noop, simulate, sleep)"),
        (["--kind", "echo=0"], "whole number 1-1000"),
        (["--kind", "noop", "--duration", "1"], "sleep and simulate"),
        (["--host", "127.0.0.1", "--sweep", "workers=1,2"], "running cluster sets workers"),
    ):
        result = CliRunner().invoke(main, ["bench", *args])
        assert result.exit_code == 2, result.output
        assert needle in result.output


def test_sleep_tasks_with_a_payload_all_succeed() -> None:
    row = bench(
        "--tasks", "200", "--duration", "0.001", "--payload", "100", "--trips", "0",
        "--no-raw", "--workers", "1",
    )  # fmt: skip
    assert isinstance(row, dict)
    assert (row["task_seconds"], row["payload_bytes"]) == (0.001, 100)
    assert row["statuses"] == {"succeeded": 200}  # a text payload would fail every one


def test_kinds_take_turns_by_weight() -> None:
    load = Load(kinds=(("echo", 3), ("sleep", 1)), duration=0.5, payload=4)
    tasks = specs(load, 0, 8, "t-")
    assert [t.kind for t in tasks] == ["echo", "echo", "echo", "sleep"] * 2
    assert [t.payload for t in tasks[2:4]] == ["xxxx", 0.5]
    assert tasks[3].description == "xxxx"


def test_a_mix_of_every_built_in_kind_succeeds() -> None:
    row = bench(
        "--tasks", "200", "--kind", "echo=2,noop", "--kind", "sleep,simulate", "--duration",
        "0.001", "--difficulty", "mix", "--payload", "10", "--trips", "0", "--no-raw",
    )  # fmt: skip
    assert isinstance(row, dict)
    assert row["kinds"] == {"echo": 2, "noop": 1, "sleep": 1, "simulate": 1}
    assert row["statuses"] == {"succeeded": 200}


def test_against_a_running_cluster_it_counts_its_workers_and_measures_no_foreign_process(
    cluster: Cluster,
) -> None:
    cluster.manager()
    for name in ("a", "b", "c"):
        cluster.worker(name, 10, "--capacity", "20")
    wait_until(connected(cluster, 3), what="3 workers connected")
    at = ["--host", "127.0.0.1", "--port", str(cluster.port), "--tasks", "300", "--trips", "5"]

    row = bench(*at, "--no-raw")
    assert isinstance(row, dict)
    assert row["workers"] == 3  # connected ones, not the --workers default
    assert row["statuses"] == {"succeeded": 300}
    assert 0 < row["rtt_p50_us"] <= row["rtt_p99_us"]
    for key in ("manager_us_per_task", "worker_us_per_task", "manager_peak_rss_mb",
                "worker_peak_rss_mb", "manager_rss_growth_mb_per_100k"):  # fmt: skip
        assert row[key] is None, key  # not started here: not measured, not 0.0
    assert row["per_worker"] is None
    shown = CliRunner().invoke(main, ["bench", *at, "--no-raw"])
    assert shown.exit_code == 0, shown.output
    assert "manager n/a, workers n/a" in shown.stdout
    assert "manager peak n/a" in shown.stdout
    assert "per worker (us/task, peak MB)  n/a" in shown.stdout


def test_progress_into_a_pipe_is_plain_lines() -> None:
    result = CliRunner().invoke(main, ["bench", "--tasks", "300", "--trips", "0", "--no-raw"])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr  # no counter rewritten in place outside a terminal
    assert "300/300 tasks done, 0 failed" in result.stderr
    assert "throughput (tasks/s)" in result.stdout
    assert re.search(r"per worker \(us/task, peak MB\) +w0 [\d.]+ / \d+, w1 ", result.stdout)


def test_the_dispatch_baseline_runs_with_the_runs_workers_and_payload() -> None:
    row = bench("--tasks", "300", "--trips", "0", "--workers", "3", "--payload", "2000")
    assert isinstance(row, dict)
    assert row["statuses"] == {"succeeded": 300}
    assert (row["raw_workers"], row["raw_payload_bytes"]) == (row["workers"], 2000) == (3, 2000)
    assert row["payload_bytes"] == 2000
