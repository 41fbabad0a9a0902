"""Run a worker process: build it from its config, serve until a signal."""

from __future__ import annotations

import asyncio

from loguru import logger

from worker.config import WorkerConfig
from worker.handlers import Handlers
from worker.runner import TaskWorker
from worker.signals import install_signal_handlers, relay


def build(cfg: WorkerConfig) -> TaskWorker:
    handlers = Handlers()
    for spec in cfg.handlers:
        handlers.load(spec)
    for kind in cfg.process_kinds:
        handlers.isolate(kind)
    return TaskWorker(
        cfg.name,
        skill=cfg.skill,
        capacity=cfg.capacity,
        handlers=handlers,
        time_scale=cfg.time_scale,
        grace=cfg.grace,
        admin_ip=cfg.host,
        admin_port=cfg.port,
        workspace_id=cfg.workspace,
        agent_id=cfg.agent_id,
        heartbeat_interval=cfg.heartbeat_interval,
        liveness=cfg.liveness,
        max_message_bytes=cfg.max_message_bytes,
    )


async def serve(cfg: WorkerConfig, shutdown_trigger: asyncio.Event | None = None) -> TaskWorker:
    worker = build(cfg)
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
    try:
        await worker.arun_worker()
    finally:
        if trigger is not None:
            trigger.cancel()
    logger.info("worker {} stopped: {} task(s) run", cfg.name, worker.completed)
    return worker
