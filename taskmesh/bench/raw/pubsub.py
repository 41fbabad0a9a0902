"""Baseline (c): a sync PUB to SUB processes; messages per second each receives, and losses.

Subscribers join before the count starts (the publisher says hello until each
one answered over PUSH), count the data messages and their order, and report
when the end marker arrives.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import zmq

from taskmesh.bench.raw.children import (
    LOCAL,
    bounded,
    children,
    drain,
    pack,
    positive,
    remaining,
    start,
    unpack,
)


def pubsub_rate(
    messages: int = 200_000,
    subscribers: int = 2,
    size: int = 16,
    hwm: int = 0,
    timeout: float = 60.0,
) -> dict[str, float]:
    """Baseline (c): sync PUB -> SUB processes; messages/s received by each, and losses.

    ``hwm`` is the high-water mark on both ends (0: unbounded, so nothing should
    be lost; 1000 is ZeroMQ's default, with which a fast publisher drops).
    """
    positive(messages=messages, subscribers=subscribers, timeout=timeout)
    deadline = time.monotonic() + timeout
    ctx = zmq.Context()
    pub, pull = ctx.socket(zmq.PUB), ctx.socket(zmq.PULL)
    pub.setsockopt(zmq.SNDHWM, hwm)
    try:
        pub_port = pub.bind_to_random_port(LOCAL)
        pull_port = pull.bind_to_random_port(LOCAL)
        with children() as procs:
            for _ in range(subscribers):
                start(
                    procs, "sub", f"{LOCAL}:{pub_port}", f"{LOCAL}:{pull_port}", hwm, timeout + 10
                )
            # Slow joiners: say hello until every subscriber has heard one.
            _until(pub, pull, {"type": "hello"}, "ready", subscribers, procs, deadline)
            data = b"x" * size
            t0 = time.monotonic()
            cpu0 = time.process_time()
            for seq in range(messages):
                pub.send(pack({"type": "data", "seq": seq, "data": data}))
            sent_s = time.monotonic() - t0
            pub_cpu = time.process_time() - cpu0
            reports = _until(pub, pull, {"type": "end"}, "count", subscribers, procs, deadline)
    finally:
        pub.close(linger=0)
        pull.close(linger=0)
        ctx.term()
    rates = [r["received"] / max(r["last"] - t0, 1e-9) for r in reports]
    received = [r["received"] for r in reports]
    return {
        "messages": messages,
        "subscribers": subscribers,
        "size": size,
        "hwm": hwm,
        "publish_per_s": messages / sent_s,
        "publisher_us_per_msg": pub_cpu / messages * 1e6,
        "min_received": min(received),
        "max_received": max(received),
        "lost": sum(messages - n for n in received),
        "out_of_order": sum(r["out_of_order"] for r in reports),
        "received_per_s": min(rates),
        "received_per_s_max": max(rates),
        "subscriber_us_per_msg": max(r["cpu_s"] / max(r["received"], 1) * 1e6 for r in reports),
    }


def _until(
    pub: zmq.Socket[bytes],
    pull: zmq.Socket[bytes],
    say: dict[str, str],
    expect: str,
    count: int,
    procs: list[subprocess.Popen[bytes]],
    deadline: float,
) -> list[dict[str, Any]]:
    """Publish ``say`` every 20 ms until ``count`` subscribers answered ``expect``."""
    replies: dict[int, dict[str, Any]] = {}
    gone: dict[int, float] = {}  # a subscriber exits right after its report: read it first
    while len(replies) < count:
        pub.send(pack(say))
        if pull.poll(int(min(20.0, remaining(deadline) * 1000))):
            for body in drain(pull):
                reply = unpack(body[0])
                if reply["type"] == expect:
                    replies[reply["pid"]] = reply
        for proc in procs:
            dead = proc.pid not in replies and proc.poll() is not None
            if dead and time.monotonic() - gone.setdefault(proc.pid, time.monotonic()) > 1.0:
                raise RuntimeError(f"child {proc.args!r} exited with {proc.returncode}")
    return list(replies.values())


def sub_main(endpoint: str, report: str, hwm: int, lifetime: float) -> None:
    """Child of (c): count data messages until the end marker; report over PUSH."""
    ctx = zmq.Context()
    sub, push = ctx.socket(zmq.SUB), ctx.socket(zmq.PUSH)
    sub.setsockopt(zmq.RCVHWM, hwm)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    push.connect(report)
    received = out_of_order = 0
    last_seq, last_t, ready, cpu0 = -1, 0.0, False, 0.0
    alive = bounded(lifetime)
    while True:
        try:
            msg = unpack(sub.recv(zmq.NOBLOCK))
        except zmq.Again:
            if not alive():
                break
            sub.poll(200)
            continue
        if msg["type"] == "data":
            received += 1
            out_of_order += msg["seq"] <= last_seq
            last_seq, last_t = msg["seq"], time.monotonic()
        elif msg["type"] == "hello" and not ready:
            ready, cpu0 = True, time.process_time()
            push.send(pack({"type": "ready", "pid": os.getpid()}))
        elif msg["type"] == "end":
            count = {"received": received, "out_of_order": out_of_order, "last": last_t}
            push.send(
                pack(
                    {
                        "type": "count",
                        "pid": os.getpid(),
                        "cpu_s": time.process_time() - cpu0,
                        **count,
                    }
                )
            )
            break
    sub.close(linger=0)
    push.close(linger=1000)
    ctx.term()
