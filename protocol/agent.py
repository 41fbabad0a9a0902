"""Agent-level records shared by every process: who an agent is, and gap detection."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AgentDetail:
    """Ceylon's ``AgentDetail``: an agent's display name, unique id and role."""

    name: str
    id: str
    role: str


class SequenceTracker:
    """Per-sender sequence numbers: tells how many messages were missed.

    Senders number their broadcasts 1, 2, 3 ... per sender (restarting at 1
    when the sender restarts).  ``see`` returns how many numbers were skipped
    since the last message of that sender, so that a receiver can log every
    gap instead of losing messages silently.
    """

    __slots__ = ("_last", "gaps", "missed")

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self.gaps = 0
        self.missed = 0

    def see(self, sender: str, seq: int) -> int:
        last = self._last.get(sender)
        self._last[sender] = seq
        if last is None:  # first message seen: what came before was not ours to get
            return 0
        if seq <= last:  # the sender restarted and numbers from 1 again
            return self._record(seq - 1)
        return self._record(seq - last - 1)

    def forget(self, sender: str) -> None:
        self._last.pop(sender, None)

    def _record(self, missed: int) -> int:
        if missed > 0:
            self.gaps += 1
            self.missed += missed
        return missed
