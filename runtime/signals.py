"""Signal handling for every long-running process (uvicorn's pattern)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

from loguru import logger


def install_signal_handlers(request_stop: Callable[[], None]) -> None:
    """SIGTERM/SIGINT call ``request_stop``; a second SIGINT forces exit (code 130)."""
    loop = asyncio.get_running_loop()
    seen: set[signal.Signals] = set()

    def on_signal(sig: signal.Signals) -> None:
        if sig == signal.SIGINT and signal.SIGINT in seen:
            logger.warning("second interrupt: exiting now")
            os._exit(130)
        seen.add(sig)
        logger.info("{} received, stopping", sig.name)
        request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


def relay(trigger: asyncio.Event | None, stopping: asyncio.Event) -> asyncio.Task[None] | None:
    """Stop when ``trigger`` is set: lets tests stop a server without signals."""
    if trigger is None:
        return None

    async def wait() -> None:
        await trigger.wait()
        stopping.set()

    return asyncio.get_running_loop().create_task(wait())
