"""Baseline (b): asyncio client -> broker -> worker -> broker -> client, one request at a time.

The broker (its own process) binds a ROUTER for clients and a ROUTER for
workers and forwards frames without decoding them; the worker (its own
process, an asyncio DEALER) decodes each request and encodes a reply.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import zmq
import zmq.asyncio

from taskmesh.bench.raw.children import (
    LOCAL,
    bounded,
    check_alive,
    children,
    drain,
    pack,
    percentile,
    positive,
    read_line,
    remaining,
    start,
    unpack,
)


def round_trip(trips: int = 2000, warmup: int = 200, timeout: float = 60.0) -> dict[str, float]:
    """Baseline (b): client -> broker -> worker -> broker -> client, one request at a time."""
    positive(trips=trips, timeout=timeout)
    return asyncio.run(_round_trip(trips, warmup, timeout))


async def _round_trip(trips: int, warmup: int, timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    with children() as procs:
        broker = start(procs, "broker", timeout + 10)
        ports = read_line(broker, min(15.0, remaining(deadline)))
        start(procs, "echo", f"{LOCAL}:{ports['back']}", timeout + 10)
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(f"{LOCAL}:{ports['front']}")
            samples: list[float] = []
            for i in range(warmup + trips):
                t0 = time.perf_counter()
                await sock.send(pack({"type": "request", "id": i, "payload": i}))
                while not await sock.poll(min(100.0, remaining(deadline) * 1000)):
                    check_alive(procs)
                reply = unpack(await sock.recv())
                t1 = time.perf_counter()
                if reply["id"] != i:
                    raise RuntimeError(f"reply {reply!r} to request {i}")
                if i >= warmup:
                    samples.append((t1 - t0) * 1e6)
        finally:
            sock.close(linger=0)
            ctx.term()
    samples.sort()
    return {
        "trips": len(samples),
        "warmup": warmup,
        "rtt_min_us": samples[0],
        "rtt_p50_us": percentile(samples, 50),
        "rtt_p95_us": percentile(samples, 95),
        "rtt_p99_us": percentile(samples, 99),
        "rtt_max_us": samples[-1],
        "rtt_mean_us": sum(samples) / len(samples),
    }


async def broker_main(lifetime: float) -> None:
    """Child of (b): forward frames between clients and the first worker; no decoding."""
    ctx = zmq.asyncio.Context()
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    for sock in (front, back):
        sock.setsockopt(zmq.LINGER, 0)
    ports = {"front": front.bind_to_random_port(LOCAL), "back": back.bind_to_random_port(LOCAL)}
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    sync_front: zmq.Socket[bytes] = zmq.Socket.shadow(front.underlying)
    sync_back: zmq.Socket[bytes] = zmq.Socket.shadow(back.underlying)
    poller = zmq.asyncio.Poller()
    poller.register(front)
    poller.register(back)
    worker: bytes | None = None
    held: list[list[bytes]] = []  # requests that came before the worker
    alive = bounded(lifetime)
    while alive():
        events = dict(await poller.poll(200))
        if back in events:
            for frames in drain(sync_back):
                if len(frames) == 2:  # [worker, b"ready"]
                    worker = frames[0]
                else:  # [worker, client, reply]
                    await front.send_multipart(frames[1:])
        if front in events:
            held += drain(sync_front)
        if worker is not None:
            for frames in held:
                await back.send_multipart([worker, *frames])
            held.clear()
    front.close(linger=0)
    back.close(linger=0)
    ctx.term()


async def echo_main(endpoint: str, lifetime: float) -> None:
    """Child of (b): an asyncio worker that decodes each request and encodes a reply."""
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    await sock.send(b"ready")
    alive = bounded(lifetime)
    while alive():
        if not await sock.poll(200):
            continue
        client, body = await sock.recv_multipart()
        msg = unpack(body)
        reply = {"type": "reply", "id": msg["id"], "result": msg["payload"]}
        await sock.send_multipart([client, pack(reply)])
    sock.close(linger=0)
    ctx.term()
