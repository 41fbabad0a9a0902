"""Baseline (a): one message per task through an asyncio ROUTER to DEALER worker processes.

The ROUTER sends msgpack tasks round-robin, at most ``window`` unanswered per
worker; each worker answers every task with one result message that echoes the
task's payload (``payload`` bytes of text, or the task's number when 0, as
taskmesh's echo and noop tasks); the ROUTER drains the replies in batches
(NOBLOCK until ``Again``).
"""

from __future__ import annotations

import asyncio
import time

import zmq
import zmq.asyncio

from taskmesh.bench.raw.children import (
    LOCAL,
    bounded,
    check_alive,
    children,
    pack,
    positive,
    remaining,
    start,
    unpack,
)


def dispatch_rate(
    tasks: int = 50_000,
    workers: int = 2,
    window: int = 500,
    timeout: float = 60.0,
    payload: int = 0,
) -> dict[str, float]:
    """Baseline (a): tasks per second, one message per task, replies drained in batches."""
    positive(tasks=tasks, workers=workers, window=window, timeout=timeout)
    if payload < 0:
        raise ValueError(f"payload must not be negative, got {payload}")
    return asyncio.run(_dispatch(tasks, workers, window, timeout, payload))


async def _dispatch(
    tasks: int, workers: int, window: int, timeout: float, payload: int
) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sync: zmq.Socket[bytes] = zmq.Socket.shadow(router.underlying)
    try:
        port = router.bind_to_random_port(LOCAL)
        with children() as procs:
            for _ in range(workers):
                start(procs, "worker", f"{LOCAL}:{port}", timeout + 10)
            idents: list[bytes] = []
            while len(idents) < workers:
                check_alive(procs)
                if await router.poll(min(100.0, remaining(deadline) * 1000)):
                    ident, _ = sync.recv_multipart()
                    idents.append(ident)
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            counts = await _pump(router, sync, idents, tasks, window, deadline, payload)
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            worker_cpu = 0.0
            for ident in idents:
                sync.send_multipart([ident, pack({"type": "stop"})])
            while len(idents) > 0:
                if not await router.poll(remaining(deadline) * 1000):
                    continue
                ident, body = sync.recv_multipart()
                bye = unpack(body)
                if bye.get("type") == "bye":
                    worker_cpu += bye["cpu_s"]
                    idents.remove(ident)
    finally:
        router.close(linger=0)
        ctx.term()
    answered = sum(counts)
    return {
        "tasks": tasks,
        "workers": workers,
        "window": window,
        "payload_bytes": payload,
        "answered": answered,
        "min_per_worker": min(counts),
        "max_per_worker": max(counts),
        "seconds": seconds,
        "tasks_per_s": tasks / seconds,
        "router_us_per_task": cpu / tasks * 1e6,
        "worker_us_per_task": worker_cpu / tasks * 1e6,
    }


async def _pump(
    router: zmq.asyncio.Socket,
    sync: zmq.Socket[bytes],
    idents: list[bytes],
    tasks: int,
    window: int,
    deadline: float,
    payload: int,
) -> list[int]:
    """Send ``tasks`` round-robin within each worker's window; drain replies until all are in."""
    index = {ident: n for n, ident in enumerate(idents)}
    inflight = [0] * len(idents)
    counts = [0] * len(idents)
    seen = bytearray(tasks)
    sent = done = 0
    data = "x" * payload if payload else None
    while done < tasks:
        while sent < tasks:
            n = sent % len(idents)
            if inflight[n] >= window:
                break
            task = {"type": "task", "id": sent, "kind": "echo", "payload": data or sent}
            try:
                sync.send_multipart([idents[n], pack(task)], zmq.NOBLOCK)
            except zmq.Again:
                break
            inflight[n] += 1
            sent += 1
        drained = 0
        while True:
            try:
                ident, body = sync.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            result = unpack(body)
            task_id = result["id"]
            if result["type"] != "result" or seen[task_id]:
                raise RuntimeError(f"unexpected reply {result!r}")
            seen[task_id] = 1
            n = index[ident]
            inflight[n] -= 1
            counts[n] += 1
            drained += 1
        done += drained
        left = remaining(deadline)  # raises once time is up, busy or not
        if not drained and done < tasks:
            await router.poll(min(1000.0, left * 1000))
    return counts


def worker_main(endpoint: str, lifetime: float) -> None:
    """Child of (a): answer each task with one result; drain in batches."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 5000)
    sock.connect(endpoint)
    sock.send(pack({"type": "ready"}))
    cpu0 = time.process_time()
    alive = bounded(lifetime)
    while True:
        try:
            msg = unpack(sock.recv(zmq.NOBLOCK))
        except zmq.Again:
            if not alive():
                break
            sock.poll(200)
            continue
        if msg["type"] == "stop":
            sock.send(pack({"type": "bye", "cpu_s": time.process_time() - cpu0}))
            break
        sock.send(pack({"type": "result", "id": msg["id"], "result": msg["payload"]}))
    sock.close(linger=1000)
    ctx.term()
