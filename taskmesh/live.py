"""``status --watch``: a view refreshed in place on a terminal, appended elsewhere.

On a terminal each frame is redrawn over the last one (cursor home, each
line cleared to its end, the rest of the screen cleared below): no scrolling,
no flicker.  Into a file or a pipe, each frame is appended under a
timestamp line, as a log of snapshots.  A manager that does not answer is a
line in the frame, not the end of the watch: it goes on until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import IO

HOME = "\x1b[H"
CLEAR_LINE = "\x1b[K"
CLEAR_BELOW = "\x1b[J"
CLEAR_SCREEN = "\x1b[2J"


class Screen:
    """Where the frames go: redrawn in place on a terminal, appended otherwise."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty()
        self.frames = 0

    def show(self, text: str) -> None:
        now = datetime.now().astimezone().isoformat(timespec="seconds")
        if self.tty:
            first = CLEAR_SCREEN if not self.frames else ""
            body = "\n".join(line + CLEAR_LINE for line in f"{text}\n\n{now}".split("\n"))
            self.stream.write(f"{first}{HOME}{body}\n{CLEAR_BELOW}")
        else:
            self.stream.write(f"--- {now}\n{text}\n\n")
        self.stream.flush()
        self.frames += 1


async def watch(
    frame: Callable[[], Awaitable[str]],
    interval: float,
    screen: Screen,
    frames: int | None = None,
) -> None:
    """Show ``frame()`` every ``interval`` seconds (``frames`` times; default: until cancelled).

    ``frame`` may raise ``ConnectionError``: its message is shown instead.
    """
    while frames is None or screen.frames < frames:
        try:
            text = await frame()
        except ConnectionError as exc:
            text = f"{exc}; trying again every {interval:g}s"
        screen.show(text)
        if frames is None or screen.frames < frames:
            await asyncio.sleep(interval)
