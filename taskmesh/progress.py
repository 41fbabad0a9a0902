"""Progress that fits where it is written: a live bar on a terminal, plain lines elsewhere.

On a terminal: tqdm's bar (done, failed, rate, ETA), rewritten in place.
Into a file, a pipe or ``docker compose exec -T``: one plain line every
``every`` seconds (with ``each``, also one whenever the done count moves:
for a handful of slow tasks) and a last one at the end, never a stream of
carriage returns.  tqdm is the field's standard progress bar: small, no
dependencies, and it knows how to behave in a terminal.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from tqdm import tqdm


class Progress:
    def __init__(
        self,
        total: int,
        label: str = "tasks",
        stream: IO[str] | None = None,
        every: float = 10.0,
        each: bool = False,
    ) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.each = each
        self._written = -1  # the done count of the last plain line
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last_line = self.started
        self._bar: tqdm[Any] | None = None
        if self.stream.isatty():
            self._bar = tqdm(
                total=total,
                unit=label[:-1] if label.endswith("s") else label,
                file=self.stream,
                dynamic_ncols=True,
                leave=True,
            )

    def __call__(self, done: int, failed: int, total: int) -> None:
        """The waiting loop's callback: ``done`` of ``total`` final, ``failed`` of them not ok."""
        grew = done - self.done
        self.done, self.failed, self.total = done, failed, total
        if self._bar is not None:
            self._bar.total = total
            self._bar.set_postfix_str(f"failed {failed}", refresh=False)
            self._bar.update(grew)
            return
        now = time.monotonic()
        if now - self._last_line >= self.every or (self.each and done != self._written):
            self._last_line = now
            self._write()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        left = self.total - self.done
        eta = f", ETA {left / rate:.0f}s" if rate > 0 and left else ""
        return (
            f"{self.done:,}/{self.total:,} {self.label} done, {self.failed:,} failed, "
            f"{rate:,.1f}/s{eta}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.done and self.done != self._written:
            self._write()

    def _write(self) -> None:
        self._written = self.done
        self.stream.write(self.line() + "\n")
        self.stream.flush()
