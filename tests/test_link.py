"""A worker's sockets (real ZeroMQ on 127.0.0.1) and where its handlers come from."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from protocol import MAX_MESSAGE_BYTES, TaskSpec
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
