"""What ``taskmesh bench`` prints and writes: one row of figures per run, a table, a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taskmesh.bench.load import Load, Outcome, kinds
from taskmesh.table import render


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _na(value: float | None, spec: str) -> str:
    """``value`` formatted, or ``n/a`` when it was not measured (``--host``)."""
    return "n/a" if value is None else format(value, spec)


def figures(load: Load, got: Outcome, raw: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The run as one flat JSON object (the keys scripts read)."""
    dispatch, trip = raw.get("dispatch", {}), raw.get("round_trip", {})
    raw_rate = dispatch.get("tasks_per_s", 0.0)
    raw_p50 = trip.get("rtt_p50_us", 0.0)
    out: dict[str, Any] = {
        "tasks": load.tasks,
        "workers": got.workers,
        "capacity": load.capacity,
        "journal": load.journal,
        "payload_bytes": load.payload,
        "kinds": kinds(load),
        "task_seconds": load.duration,
        "seconds": round(got.seconds, 3),
        "tasks_per_s": round(got.tasks_per_s, 1),
        "raw_tasks_per_s": round(raw_rate, 1),
        "raw_workers": dispatch.get("workers"),  # the baseline's, equal to the run's
        "raw_payload_bytes": dispatch.get("payload_bytes"),
        "ratio": round(got.tasks_per_s / raw_rate, 3) if raw_rate else None,
        "rtt_p50_us": round(got.rtt_us.get("p50", 0.0), 1),
        "rtt_p95_us": round(got.rtt_us.get("p95", 0.0), 1),
        "rtt_p99_us": round(got.rtt_us.get("p99", 0.0), 1),
        "raw_rtt_p50_us": round(raw_p50, 1),
        "raw_rtt_p99_us": round(trip.get("rtt_p99_us", 0.0), 1),
        "rtt_ratio": round(got.rtt_us["p50"] / raw_p50, 3) if raw_p50 and got.rtt_us else None,
        "manager_us_per_task": _round(got.manager_us_per_task, 2),
        "worker_us_per_task": _round(got.worker_us_per_task, 2),  # all workers together
        "client_us_per_task": round(got.client_us_per_task, 2),
        "raw_router_us_per_task": round(dispatch.get("router_us_per_task", 0.0), 2),
        "manager_peak_rss_mb": _round(got.manager_peak_rss_mb, 1),
        "worker_peak_rss_mb": _round(got.worker_peak_rss_mb, 1),
        "manager_rss_growth_mb_per_100k": _round(got.manager_rss_growth_mb_per_100k, 2),
        "per_worker": None
        if got.per_worker is None
        else [
            {
                "name": w["name"],
                "us_per_task": round(w["us_per_task"], 2),
                "peak_rss_mb": round(w["peak_rss_mb"], 1),
            }
            for w in got.per_worker
        ],
        "status_ms": round(got.status_ms, 2),
        "statuses": got.statuses,
    }
    if "broadcast" in raw:
        pubsub = raw.get("pubsub", {}).get("received_per_s", 0.0)
        got_b = raw["broadcast"]
        out["broadcast_per_s"] = round(got_b["received_per_s"], 1)
        out["broadcast_lost"] = got_b["lost"]
        out["raw_pubsub_per_s"] = round(pubsub, 1)
        out["broadcast_ratio"] = round(got_b["received_per_s"] / pubsub, 3) if pubsub else None
    return out


def table(row: dict[str, Any]) -> str:
    """One run, for people: taskmesh, the raw baseline of the same run, their ratio."""

    def ratio(value: Any) -> str:
        return f"{value:.2f}x" if isinstance(value, float) else "-"

    lines = [
        [
            "throughput (tasks/s)",
            f"{row['tasks_per_s']:,.0f}",
            f"{row['raw_tasks_per_s']:,.0f}",
            ratio(row["ratio"]),
        ],
        [
            "round trip p50 (us)",
            f"{row['rtt_p50_us']:,.0f}",
            f"{row['raw_rtt_p50_us']:,.0f}",
            ratio(row["rtt_ratio"]),
        ],
        ["round trip p95 / p99 (us)", f"{row['rtt_p95_us']:,.0f} / {row['rtt_p99_us']:,.0f}"],
        [
            "CPU per task (us)",
            f"manager {_na(row['manager_us_per_task'], '.1f')}, "
            f"workers {_na(row['worker_us_per_task'], '.1f')}, "
            f"client {row['client_us_per_task']:.1f}",
            f"router {row['raw_router_us_per_task']:.1f}",
        ],
        [
            "memory (MB)",
            f"manager peak {_na(row['manager_peak_rss_mb'], '.0f')}, "
            f"{_na(row['manager_rss_growth_mb_per_100k'], '+.1f')} per 100k tasks",
        ],
        [
            "per worker (us/task, peak MB)",
            "n/a"
            if row["per_worker"] is None
            else ", ".join(
                f"{w['name']} {w['us_per_task']:.1f} / {w['peak_rss_mb']:.0f}"
                for w in row["per_worker"]
            ),
        ],
        ["status round trip (ms)", f"{row['status_ms']:.2f}"],
    ]
    if "broadcast_per_s" in row:
        lines.append(
            [
                "broadcast per worker (msg/s)",
                f"{row['broadcast_per_s']:,.0f} (lost {row['broadcast_lost']})",
                f"{row['raw_pubsub_per_s']:,.0f}",
                ratio(row["broadcast_ratio"]),
            ]
        )
    title = (
        f"{row['tasks']:,} tasks, {row['workers']} workers x capacity {row['capacity']}, "
        f"journal {row['journal']}, kinds "
        + ",".join(f"{k}={w}" for k, w in row["kinds"].items())
        + f", {row['seconds']:.2f}s"
    )
    rows = [line + [""] * (4 - len(line)) for line in lines]
    return title + "\n\n" + render(["", "taskmesh", "raw pyzmq", "ratio"], rows)


def sweep_table(param: str, rows: list[dict[str, Any]]) -> str:
    heads = [param, "tasks/s", "raw tasks/s", "ratio", "rtt p50 us", "mgr us/task", "MB/100k"]
    body = [
        [
            r[param],
            f"{r['tasks_per_s']:,.0f}",
            f"{r['raw_tasks_per_s']:,.0f}",
            r["ratio"],
            f"{r['rtt_p50_us']:,.0f}",
            _na(r["manager_us_per_task"], ""),
            _na(r["manager_rss_growth_mb_per_100k"], ""),
        ]
        for r in rows
    ]
    return render(heads, body)


def write(out: Path, name: str, rows: list[dict[str, Any]], param: str | None) -> list[Path]:
    """``name.json``, ``name.txt`` and (with matplotlib) ``name.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{name}.json", out / f"{name}.txt"]
    files[0].write_text(json.dumps(rows, indent=2) + "\n")
    text = sweep_table(param, rows) if param else table(rows[0])
    files[1].write_text(text + "\n")
    if param:
        png = plot(out / f"{name}.png", param, rows)
        if png is not None:
            files.append(png)
    return files


def plot(path: Path, param: str, rows: list[dict[str, Any]]) -> Path | None:
    """Throughput against ``param`` beside the raw baseline; ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    xs = [str(r[param]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, [r["tasks_per_s"] for r in rows], marker="o", label="taskmesh")
    ax.plot(xs, [r["raw_tasks_per_s"] for r in rows], marker="s", label="raw pyzmq (a)")
    ax.set_xlabel(param)
    ax.set_ylabel("tasks per second")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"taskmesh bench: no-op tasks by {param}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
