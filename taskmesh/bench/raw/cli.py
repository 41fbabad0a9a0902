"""``python -m taskmesh.bench.raw``: run the three baselines and print a table or JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from taskmesh.bench.raw.dispatch import dispatch_rate, worker_main
from taskmesh.bench.raw.pubsub import pubsub_rate, sub_main
from taskmesh.bench.raw.round_trip import broker_main, echo_main, round_trip


def measure_all(
    tasks: int = 50_000, trips: int = 2000, messages: int = 200_000, rounds: int = 1
) -> dict[str, dict[str, float]]:
    """All three baselines; with ``rounds`` > 1 the best round of each counts."""
    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        runs = {
            "dispatch": (dispatch_rate(tasks), "tasks_per_s", 1),
            "round_trip": (round_trip(trips, warmup=max(10, trips // 10)), "rtt_p50_us", -1),
            "pubsub": (pubsub_rate(messages), "received_per_s", 1),
        }
        for name, (result, key, sign) in runs.items():
            if name not in best or sign * result[key] > sign * best[name][key]:
                best[name] = result
    return best


def table(results: dict[str, dict[str, float]]) -> str:
    a, b, c = results["dispatch"], results["round_trip"], results["pubsub"]
    rows = [
        (
            f"(a) ROUTER -> {a['workers']:.0f} DEALER, 1 msg/task",
            f"{a['tasks_per_s']:,.0f} tasks/s",
            f"router {a['router_us_per_task']:.1f} us/task, workers {a['worker_us_per_task']:.1f}",
        ),
        (
            "(b) client->broker->worker round trip",
            f"p50 {b['rtt_p50_us']:,.0f} us",
            f"p95 {b['rtt_p95_us']:,.0f} us, p99 {b['rtt_p99_us']:,.0f} us",
        ),
        (
            "(c) PUB -> 2 SUB, per subscriber",
            f"{c['received_per_s']:,.0f} msg/s",
            f"lost {c['lost']:.0f}, publish {c['publish_per_s']:,.0f} msg/s",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1], argv[2:])
    parser = argparse.ArgumentParser(
        prog="python -m taskmesh.bench.raw", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tasks", type=int, default=50_000, help="tasks for (a)")
    parser.add_argument("--trips", type=int, default=2000, help="timed round trips for (b)")
    parser.add_argument("--messages", type=int, default=200_000, help="messages for (c)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat; the best round counts")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    results = measure_all(args.tasks, args.trips, args.messages, args.rounds)
    sys.stdout.write((json.dumps(results, indent=2) if args.json else table(results)) + "\n")
    return 0


def _child(role: str, args: list[str]) -> int:
    if role == "worker":
        worker_main(args[0], float(args[1]))
    elif role == "broker":
        asyncio.run(broker_main(float(args[0])))
    elif role == "echo":
        asyncio.run(echo_main(args[0], float(args[1])))
    elif role == "sub":
        sub_main(args[0], args[1], int(args[2]), float(args[3]))
    else:
        raise SystemExit(f"unknown role {role!r}")
    return 0
