"""A private network namespace for one test, in which one peer's packets can be dropped.

``with PrivateNetwork() as net:`` moves the calling thread (the test) into a
new, empty network namespace with only ``lo`` up; every process and ZeroMQ
context it starts inside the block lives there too.  All of ``127.0.0.0/8``
is local on ``lo``, so a manager bound to ``0.0.0.0`` is reachable at
127.0.0.1, 127.0.0.2, ... and a worker started with ``--host 127.0.0.2``
sends and receives all its traffic (DEALER and SUB) through that address.
``net.cut("127.0.0.2")`` then drops exactly that worker's packets, both ways
(optionally only those of one manager port), and ``net.heal()`` restores them;
the client and the other workers, on other addresses, are unaffected.

Packets are dropped on ``INPUT`` (after they were sent), as a lossy network
would: the sender's TCP retransmits with its usual backoff.  A DROP on
``OUTPUT`` would instead fail the sender's ``send`` with ``EPERM``.

Leaving the block removes the rules and returns the thread to the namespace
it came from; the namespace itself disappears with the last process in it.
Nothing outside it is touched.  ``unavailable()`` says why this cannot work
here (no privilege, no iptables, a kernel without netfilter), for a skip.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType

CLONE_NEWNET = 0x40000000
IPTABLES = ("iptables", "iptables-legacy")


class NetnsError(RuntimeError):
    """A namespace or packet-filter command failed."""


class NetnsUnavailable(NetnsError):
    """A private network namespace with packet filtering cannot be made here."""


@dataclass(frozen=True, slots=True)
class Cut:
    """Dropped traffic: everything to and from ``address`` (or only on ``port`` there).

    Its rules live in a chain of its own (``chain``), jumped to from ``INPUT``:
    adding or removing that one jump cuts or heals both directions at once,
    and the chain's counters say how many packets the cut dropped.
    """

    chain: str
    address: str
    port: int | None = None

    def rules(self) -> list[list[str]]:
        """The chain's rule specs, one per direction."""
        to_peer = ["-d", self.address]
        from_peer = ["-s", self.address]
        if self.port is not None:
            to_peer += ["-p", "tcp", "--dport", str(self.port)]
            from_peer += ["-p", "tcp", "--sport", str(self.port)]
        return [[*to_peer, "-j", "DROP"], [*from_peer, "-j", "DROP"]]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str, error: type[NetnsError] = NetnsUnavailable) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise error(f"{what}: {os.strerror(err)} (errno {err})")


@dataclass
class PrivateNetwork:
    """The calling thread's own network namespace while the ``with`` block runs.

    Only the calling thread moves (threads started before stay outside), and
    what it starts inside: processes, and the I/O threads of ZeroMQ contexts
    whose first socket it creates there.
    """

    cuts: list[Cut] = field(default_factory=list)
    iptables: str = ""
    #: Packets dropped by cuts already healed.
    healed_drops: int = 0
    _made: int = 0
    _home: int = -1

    def __enter__(self) -> PrivateNetwork:
        libc = _libc()
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        except NetnsUnavailable:
            os.close(self._home)
            raise
        try:
            try:
                self._run(["ip", "link", "set", "lo", "up"])
            except NetnsError as exc:
                raise NetnsUnavailable(str(exc)) from exc
            self.iptables = self._find_iptables()
        except BaseException:
            self._leave()
            raise
        return self

    def __exit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.heal()
        finally:
            self._leave()

    def cut(self, address: str, port: int | None = None) -> Cut:
        """Drop every packet to and from ``address`` (only TCP port ``port`` there, if given)."""
        self._made += 1
        cut = Cut(f"CUT{self._made}", address, port)
        self._run([self.iptables, "-N", cut.chain])
        for rule in cut.rules():
            self._run([self.iptables, "-A", cut.chain, *rule])
        self._run([self.iptables, "-A", "INPUT", "-j", cut.chain])
        self.cuts.append(cut)
        return cut

    def heal(self, cut: Cut | None = None) -> float:
        """Remove ``cut`` (default: every cut); returns ``time.monotonic()`` right after."""
        healed = time.monotonic()
        for c in [cut] if cut is not None else list(self.cuts):
            self._run([self.iptables, "-D", "INPUT", "-j", c.chain])
            healed = time.monotonic()
            self.healed_drops += self._count(c)
            self.cuts.remove(c)
            self._run([self.iptables, "-F", c.chain])
            self._run([self.iptables, "-X", c.chain])
        return healed

    @contextmanager
    def partition(self, address: str, port: int | None = None) -> Iterator[Cut]:
        """``cut`` for the duration of the block, healed also when it raises."""
        cut = self.cut(address, port)
        try:
            yield cut
        finally:
            if cut in self.cuts:
                self.heal(cut)

    def dropped(self) -> int:
        """Packets dropped so far by all cuts, healed or not (proves a cut took effect)."""
        return self.healed_drops + sum(self._count(c) for c in self.cuts)

    # ------------------------------------------------------------------ internals

    def _find_iptables(self) -> str:
        errors = []
        for name in IPTABLES:
            path = shutil.which(name)
            if path is None:
                continue
            probe = subprocess.run(
                [path, "-A", "INPUT", "-s", "127.0.0.254", "-j", "DROP"],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.returncode == 0:
                self._run([path, "-D", "INPUT", "-s", "127.0.0.254", "-j", "DROP"])
                return path
            errors.append(f"{name}: {probe.stderr.strip()}")
        if not errors:
            raise NetnsUnavailable("iptables is not installed (Debian: apt-get install iptables)")
        raise NetnsUnavailable("iptables does not work in a new namespace: " + "; ".join(errors))

    def _count(self, cut: Cut) -> int:
        listing = self._run([self.iptables, "-L", cut.chain, "-v", "-n", "-x"])
        rows = listing.splitlines()[2:]  # after the chain's title and the column names
        return sum(int(row.split()[0]) for row in rows if row.strip())

    def _leave(self) -> None:
        if self._home < 0:
            return
        try:
            rc = _libc().setns(self._home, CLONE_NEWNET)
            _check(rc, "setns back to the home namespace", NetnsError)
        finally:
            os.close(self._home)
            self._home = -1

    @staticmethod
    def _run(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10)
        except FileNotFoundError as exc:
            raise NetnsError(f"{cmd[0]} is not installed") from exc
        if done.returncode != 0:
            raise NetnsError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
        return done.stdout


@functools.cache
def unavailable() -> str | None:
    """Why ``PrivateNetwork`` cannot be used on this machine, or ``None`` if it can."""
    try:
        with PrivateNetwork() as net, net.partition("127.0.0.254"):
            pass
    except (NetnsError, OSError) as exc:
        return f"no private network namespace with iptables here: {exc}"
    return None
