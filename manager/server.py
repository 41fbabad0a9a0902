"""Run the manager process: an ``Admin`` with the task layer attached, until a signal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from manager.actions import TaskActions
from manager.admin import Admin
from manager.config import ManagerConfig
from manager.endpoint import Transport
from manager.journal import Journal
from manager.service import TaskService
from manager.store import MemoryStore, Store
from runtime.memory import tune_gc
from runtime.signals import install_signal_handlers, relay


def build(
    cfg: ManagerConfig,
    *,
    transport: Transport | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Admin, TaskService]:
    """The manager's parts, wired: an ``Admin``, its ``TaskService`` over ``cfg.db`` and the
    operator actions (``TaskActions``)."""
    store: Store = (
        MemoryStore() if cfg.db == ":memory:" else Journal(cfg.db, fsync=cfg.fsync, clock=clock)
    )
    admin = Admin(config=cfg, role="manager", transport=transport, clock=clock)
    service = TaskService(admin, store)
    admin.use(service)
    admin.use(TaskActions(service))
    return admin, service


async def serve(cfg: ManagerConfig, shutdown_trigger: asyncio.Event | None = None) -> TaskService:
    """Serve until SIGTERM/SIGINT (or ``shutdown_trigger``); a second SIGINT exits at once."""
    admin, service = build(cfg)
    admin.open()
    install_signal_handlers(admin.request_stop)
    if admin.keyring is not None:  # SIGHUP: read the key directories again
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, admin.reload_keys)
    trigger = relay(shutdown_trigger, admin.stopping)
    if cfg.ready_file:
        write_ready_file(
            Path(cfg.ready_file),
            {"endpoint": admin.address, "pub_endpoint": admin.pub_endpoint, "epoch": admin.epoch},
        )
    tune_gc()
    await admin.arun_admin()
    if trigger is not None:
        trigger.cancel()
    book = service.book
    logger.info(
        "manager stopped: {} task(s) finished here, {} queued, {} running, "
        "{} duplicate result(s), {} bad message(s)",
        sum(book.finished.values()),
        book.queued,
        book.running,
        book.duplicates,
        admin.counters["bad_messages"],
    )
    return service


def write_ready_file(path: Path, info: dict[str, object]) -> None:
    """Write atomically, with ``pid``, so a waiting process never reads half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({**info, "pid": os.getpid()}) + "\n")
    tmp.replace(path)
