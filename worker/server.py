"""Run a worker process: a ``Worker`` with the task runner attached, until a signal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from loguru import logger

from runtime.memory import tune_gc
from runtime.signals import install_signal_handlers, relay
from worker.agent import Worker
from worker.config import WorkerConfig
from worker.handlers import Handlers, load_handlers
from worker.link import Link
from worker.runner import TaskRunner


def build(
    cfg: WorkerConfig,
    handlers: Handlers | None = None,
    *,
    link: Link | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Worker, TaskRunner]:
    """A worker and its runner, wired; handlers from ``cfg`` unless given."""
    if handlers is None:
        handlers = load_handlers(cfg.handlers, cfg.process_kinds, cfg.app_dir, cfg.process_pool)
    worker = Worker(config=cfg, link=link, clock=clock)
    runner = TaskRunner(worker, handlers)
    worker.use(runner)
    return worker, runner


async def serve(
    cfg: WorkerConfig,
    shutdown_trigger: asyncio.Event | None = None,
    handlers: Handlers | None = None,
) -> TaskRunner:
    """Serve until SIGTERM (drain) or a second signal; ``WorkerRefused`` if refused."""
    worker, runner = build(cfg, handlers)
    install_signal_handlers(worker.request_stop)
    trigger = relay(shutdown_trigger, worker.stopping)
    logger.info(
        "worker {} (skill {}, capacity {}, kinds {}) connecting to {}:{}",
        cfg.name,
        cfg.skill,
        cfg.capacity,
        ", ".join(worker.kinds),
        cfg.host,
        cfg.port,
    )
    tune_gc()
    try:
        await worker.arun_worker()
    finally:
        if trigger is not None:
            trigger.cancel()
    logger.info("worker {} stopped: {} task(s) run", cfg.name, runner.completed)
    return runner
