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

from manager import metrics
from manager.actions import TaskActions
from manager.admin import Admin
from manager.config import ManagerConfig
from manager.endpoint import Transport
from manager.httpd import StatusServer
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
    if cfg.metrics_port is not None:
        metrics.require()  # before anything binds
    admin, service = build(cfg)
    httpd = None
    if cfg.metrics_port is not None:  # first: a port in use leaves nothing else bound
        httpd = StatusServer(service, cfg.bind, cfg.metrics_port)
        await httpd.start()
    admin.open()
    install_signal_handlers(admin.request_stop)
    if admin.keyring is not None:  # SIGHUP: read the key directories again
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, admin.reload_keys)
    trigger = relay(shutdown_trigger, admin.stopping)
    if cfg.ready_file:
        info: dict[str, object] = {
            "endpoint": admin.address,
            "pub_endpoint": admin.pub_endpoint,
            "epoch": admin.epoch,
        }
        if httpd is not None:
            info["metrics"] = httpd.url
        write_ready_file(Path(cfg.ready_file), info)
    tune_gc()
    try:
        await admin.arun_admin()
    finally:
        if httpd is not None:
            await httpd.close()
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
