"""A worker's sockets (real ZeroMQ on 127.0.0.1) and where its handlers come from."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from click.testing import CliRunner

from protocol import MAX_MESSAGE_BYTES, Heartbeat, Message, TaskSpec, encode
from runtime.keys import CurveClient, generate, load_public, load_secret
from taskmesh.cli import main
from worker import TaskContext
from worker.handlers import HandlerError, load_handlers
from worker.link import RETRY_REFUSED, ManagerLink


def test_a_cancellation_arriving_with_a_socket_replacement_is_not_swallowed(
    unused_port: int,
) -> None:
    async def body() -> None:
        link = ManagerLink("w-1", "127.0.0.1", unused_port, MAX_MESSAGE_BYTES, "w")
        link.open()

        async def consume() -> None:
            async for _ in link.from_manager():
                pass

        task = asyncio.ensure_future(consume())
        try:
            await asyncio.sleep(0.05)
            link.new_dealer()  # the pending receive on the old DEALER ends...
            task.cancel()  # ...at the moment the loop is really being cancelled
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 2)
        finally:
            task.cancel()
            link.close()

    asyncio.run(body())


def test_a_renewed_sub_goes_on_receiving_from_the_same_publisher(unused_port: int) -> None:
    async def body() -> None:
        ctx = zmq.asyncio.Context()
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        link = ManagerLink("w-1", "127.0.0.1", unused_port, MAX_MESSAGE_BYTES, "w")
        link.open()
        link.set_heartbeat(0.2, 3)
        got: asyncio.Queue[Message] = asyncio.Queue()

        async def consume() -> None:
            async for msg in link.published():
                got.put_nowait(msg)

        async def heard(epoch: str) -> bool:
            """Publish until the link's SUB delivers it (a new SUB subscribes after a moment)."""
            for _ in range(100):
                await pub.send(encode(Heartbeat(epoch=epoch, time=0)))
                try:
                    while True:
                        msg = await asyncio.wait_for(got.get(), 0.02)
                        if isinstance(msg, Heartbeat) and msg.epoch == epoch:
                            return True
                except TimeoutError:
                    pass
            return False

        task = asyncio.ensure_future(consume())
        try:
            link.connect_sub(f"tcp://127.0.0.1:{port}")
            assert await heard("first")
            link.renew_sub()
            assert link.sub_endpoint == f"tcp://127.0.0.1:{port}"
            assert await heard("second")  # the receive loop moved to the new SUB
            assert not task.done()
        finally:
            task.cancel()
            link.close()
            pub.close()
            ctx.term()

    asyncio.run(body())


def test_handlers_load_from_the_app_dir(tmp_path: Path) -> None:
    (tmp_path / "my_tasks.py").write_text(
        "def double(task, ctx):\n    return task.payload * 2\n\nHANDLERS = {'double': double}\n"
    )
    handlers = load_handlers(("my_tasks",), (), str(tmp_path))
    fn = handlers.get("double")
    assert fn is not None
    ctx = TaskContext(worker="w", worker_id="w-1", skill=1, attempt=1, time_scale=1.0)
    assert fn(TaskSpec(id="x", payload=21), ctx) == 42


def test_a_missing_handler_module_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HandlerError, match="no_such_module"):
        load_handlers(("no_such_module",), (), str(tmp_path))
    result = CliRunner().invoke(
        main, ["worker", "--name", "w", "--skill", "1", "--handlers", "no_such_module"]
    )
    assert result.exit_code == 1
    assert "cannot load handlers" in result.output
    assert "no_such_module" in result.output


def test_a_refused_handshake_gets_a_new_dealer_every_retry_refused_seconds(
    tmp_path: Path,
) -> None:
    """A plain (non-CURVE) ROUTER refuses a CURVE worker's handshake: the link notices, and
    replaces its DEALER at most once per ``RETRY_REFUSED`` (times given, not waited)."""

    async def body() -> None:
        ctx = zmq.asyncio.Context()
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        generate("w", tmp_path)
        generate("m", tmp_path)
        keys, server = load_secret(tmp_path / "w.key_secret"), load_public(tmp_path / "m.key")
        curve = CurveClient(keys=keys, server=server)
        link = ManagerLink("w-1", "127.0.0.1", port, MAX_MESSAGE_BYTES, "w", curve)
        link.open()
        try:
            for _ in range(100):  # the handshake fails within milliseconds; bounded at 5 s
                if link.refused:
                    break
                link.send_nowait(encode(Heartbeat(epoch="e", time=1, running=0)))
                await asyncio.sleep(0.05)
            assert link.refused
            first = link._dealer
            link.retry_refused(100.0)  # the first retry comes at once
            assert link._dealer is not first
            assert not link.refused
            link.refused = True  # refused again
            second = link._dealer
            link.retry_refused(100.0 + RETRY_REFUSED / 2)
            assert link._dealer is second  # too soon: the same socket
            link.retry_refused(100.0 + RETRY_REFUSED)
            third = link._dealer
            assert third is not second
            link.retry_refused(200.0)
            assert link._dealer is third  # not refused since: kept
        finally:
            link.close()
            router.close()
            ctx.term()

    asyncio.run(body())
