"""``taskmesh worker`` (also ``python -m worker``): parse options, then serve."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from runtime.keys import KeyFileError
from runtime.logs import configure_logging
from runtime.settings import from_cli, options
from worker.config import WorkerConfig
from worker.handlers import HandlerError, load_handlers
from worker.session import WorkerRefused


@click.command("worker", short_help="Run a worker (runs the tasks the manager assigns).")
@options(WorkerConfig)
def worker_command(**values: Any) -> None:
    """Run a worker: connect to the manager at HOST:PORT and run the tasks it assigns."""
    cfg = from_cli(WorkerConfig, values)
    configure_logging(cfg.log_level, cfg.log_format, cfg.name)
    from worker.server import serve  # after logging is set up

    try:
        handlers = load_handlers(cfg.handlers, cfg.process_kinds, cfg.app_dir, cfg.process_pool)
    except HandlerError as exc:
        raise click.ClickException(f"cannot load handlers: {exc}") from None
    try:
        asyncio.run(serve(cfg, handlers=handlers))
    except WorkerRefused as exc:
        raise click.ClickException(f"the manager refused this worker: {exc}") from None
    except KeyFileError as exc:
        raise click.ClickException(f"CURVE keys: {exc}") from None


def main() -> None:
    worker_command(prog_name="python -m worker")
