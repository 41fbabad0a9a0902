"""The raw pyzmq baselines run, count every message, and leave no process behind.

Tiny sizes; nothing here asserts on speed (the numbers are for ``taskmesh bench``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.journal_cost import main as journal_cost
from taskmesh.bench.raw import dispatch_rate, pubsub_rate, round_trip

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def our_children() -> list[int]:
    """Pids of live (or unreaped) processes whose parent is this test process."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == os.getpid():
            pids.append(int(stat.parent.name))
    return pids


def test_dispatch_answers_every_task_once_split_round_robin() -> None:
    result = dispatch_rate(tasks=301, workers=2, window=7, timeout=30)

    assert result["answered"] == result["tasks"] == 301
    assert (result["min_per_worker"], result["max_per_worker"]) == (150, 151)
    assert result["tasks_per_s"] == pytest.approx(301 / result["seconds"])
    assert result["worker_us_per_task"] > 0
    assert our_children() == []


def test_round_trip_percentiles_are_ordered_over_the_timed_trips() -> None:
    result = round_trip(trips=40, warmup=5, timeout=30)

    assert result["trips"] == 40
    assert 0 < result["rtt_min_us"] <= result["rtt_p50_us"] <= result["rtt_p95_us"]
    assert result["rtt_p95_us"] <= result["rtt_p99_us"] <= result["rtt_max_us"]
    assert result["rtt_min_us"] <= result["rtt_mean_us"] <= result["rtt_max_us"]
    assert our_children() == []


def test_pubsub_counts_add_up_and_nothing_is_lost_without_a_high_water_mark() -> None:
    result = pubsub_rate(messages=2000, subscribers=2, hwm=0, timeout=30)

    assert result["min_received"] == result["max_received"] == 2000
    assert result["lost"] == 0
    assert result["out_of_order"] == 0
    assert result["received_per_s"] <= result["received_per_s_max"]
    assert our_children() == []


def test_a_baseline_that_runs_out_of_time_kills_its_processes() -> None:
    with pytest.raises(TimeoutError):
        dispatch_rate(tasks=10_000_000, workers=2, timeout=1.0)

    assert our_children() == []


@pytest.mark.parametrize("call", [lambda: dispatch_rate(tasks=0), lambda: round_trip(trips=0)])
def test_empty_sizes_are_refused_before_any_process_starts(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        call()

    assert our_children() == []


def test_cli_prints_one_json_object_with_all_three_baselines() -> None:
    cmd = [sys.executable, "-m", "taskmesh.bench.raw", "--tasks", "50", "--trips", "10"]
    out = subprocess.run(
        [*cmd, "--messages", "100", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout

    results = json.loads(out)
    assert results["dispatch"]["answered"] == 50
    assert results["round_trip"]["trips"] == 10
    assert results["pubsub"]["lost"] == 0


def test_dispatch_takes_the_worker_count_and_payload_size_it_is_given() -> None:
    result = dispatch_rate(tasks=100, workers=3, payload=5000, timeout=30)

    assert result["answered"] == 100
    assert (result["workers"], result["payload_bytes"]) == (3, 5000)
    assert (result["min_per_worker"], result["max_per_worker"]) == (33, 34)
    assert our_children() == []


def test_journal_cost_times_the_journal_and_bare_sqlite_on_a_real_file() -> None:
    result = CliRunner().invoke(journal_cost, ["--tasks", "1000", "--repeat", "2", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["tasks"] == 1000
    assert set(out["runs"]) == {"journal", "bare"}
    for name, runs in out["runs"].items():
        assert len(runs) == 2
        assert all(us > 0 for us in runs)
        assert min(runs) <= out["us_per_task"][name] <= max(runs)
    refused = CliRunner().invoke(journal_cost, ["--tasks", "10"])
    assert refused.exit_code == 2
    assert "1000" in refused.output  # the smallest run it accepts
