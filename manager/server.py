"""Run the manager process: build it from its config, serve until a signal."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from loguru import logger

from manager.config import ManagerConfig
from manager.service import TaskManager
from worker.signals import install_signal_handlers, relay


def build(cfg: ManagerConfig) -> TaskManager:
    return TaskManager(
        cfg.name,
        port=cfg.port,
        host=cfg.host,
        pub_port=cfg.pub_port,
        workspace_id=cfg.workspace,
        policy=cfg.policy,
        fallback=cfg.unmatched == "strongest",
        expect_workers=cfg.expect_workers,
        max_attempts=cfg.max_attempts,
        db=cfg.db,
        fsync=cfg.fsync,
        max_queued=cfg.max_queued,
        heartbeat_interval=cfg.heartbeat_interval,
        liveness=cfg.liveness,
        max_message_bytes=cfg.max_message_bytes,
    )


async def serve(cfg: ManagerConfig, shutdown_trigger: asyncio.Event | None = None) -> TaskManager:
    """Serve until SIGTERM/SIGINT (or ``shutdown_trigger``); a second SIGINT exits at once."""
    mgr = build(cfg)
    mgr.open()
    install_signal_handlers(mgr.request_stop)
    trigger = relay(shutdown_trigger, mgr.stopping)
    if cfg.ready_file:
        write_ready_file(
            Path(cfg.ready_file),
            {"endpoint": mgr.endpoint, "pub_endpoint": mgr.pub_endpoint, "epoch": mgr.epoch},
        )
    await mgr.arun_admin()
    if trigger is not None:
        trigger.cancel()
    counts = mgr.book.counts()
    logger.info(
        "manager stopped: {} task(s), {} done, {} queued, {} running, {} duplicate result(s), "
        "{} bad message(s)",
        len(mgr.book),
        counts["done"],
        counts["queued"],
        counts["running"],
        counts["duplicates"],
        mgr.counters["bad_messages"],
    )
    return mgr


def write_ready_file(path: Path, info: dict[str, object]) -> None:
    """Write atomically, with ``pid``, so a waiting process never reads half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({**info, "pid": os.getpid()}) + "\n")
    tmp.replace(path)
