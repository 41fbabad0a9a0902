"""A worker's sockets (real ZeroMQ on 127.0.0.1) and where its handlers come from."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from click.testing import CliRunner

from protocol import MAX_MESSAGE_BYTES, Heartbeat, Message, TaskSpec, encode
from taskmesh.cli import main
from worker import TaskContext
from worker.handlers import HandlerError, load_handlers
from worker.link import ManagerLink


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
