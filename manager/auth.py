"""Who may connect and what each key may do: the manager's side of CURVE.

With ``--secret-key`` the ROUTER and the PUB are CURVE servers.  ZeroMQ asks
the ZAP handler (pyzmq's ``zmq.auth`` authenticator, in the manager's event
loop) about every new connection; ``Gate.callback`` answers from the
``KeyRing``: the public keys in ``--worker-keys``, ``--client-keys`` and
``--operator-keys``.  The ROUTER admits any listed key, the PUB only worker
keys; an unlisted key gets no connection at all.  A peer that does not speak
CURVE fails the handshake before ZAP is asked; a socket monitor counts those.

Once connected, every message carries the key that authenticated it
(ZeroMQ's ``User-Id``), and ``Access`` decides per message type: worker keys
register and run tasks, client and operator keys submit and read them.  The
ring is read again on SIGHUP and whenever a key directory changes (checked
every ``RELOAD_EVERY`` seconds); messages from a key that was removed are
dropped, and what it held is released.  A reload fails closed: a malformed
key file is skipped and a vanished directory lists nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
import zmq.asyncio
from loguru import logger
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import parse_monitor_message

from protocol import Message
from runtime.keys import KeyFileError, KeyPair, dir_stamp, file_stamp, scan_dir
from runtime.throttle import Throttle

if TYPE_CHECKING:
    from manager.config import ManagerConfig

WORKER, CLIENT, OPERATOR = "worker", "client", "operator"
#: ZAP domains of the two sockets.
ROUTER_DOMAIN, PUB_DOMAIN = "taskmesh", "taskmesh-pub"
#: Seconds between two checks of the key directories for changes.
RELOAD_EVERY = 2.0

#: Who may send what (message ``TYPE``): worker keys act as agents, client and
#: operator keys as clients.  A type not listed here is open to every listed key.
AGENT_MESSAGES = frozenset(
    {"register", "ready", "heartbeat", "bye", "drain", "direct", "broadcast", "results"}
)
CLIENT_MESSAGES = frozenset(
    {"submit", "tasks", "watch", "status", "cancel", "retry", "purge", "history"}
)


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    FORBIDDEN = "forbidden"  # a listed key, the wrong role: answered with an error
    REVOKED = "revoked"  # no longer listed: dropped without a reply


class KeyRing:
    """The allow-lists: public key (Z85 text) -> roles, read from the key directories."""

    def __init__(self, dirs: Mapping[str, str | None]) -> None:
        self.dirs = {role: path for role, path in dirs.items() if path}
        self.roles: dict[str, frozenset[str]] = {}
        self.names: dict[str, str] = {}  # key -> file name, for log lines
        self._stamps: dict[str, tuple[int, int]] = {}
        self._bad: dict[Path, tuple[tuple[int, int, int], str]] = {}  # skipped files, logged
        self._missing: dict[str, str] = {}  # role -> why its directory reads as empty, logged

    def load(self, *, strict: bool = True) -> dict[str, frozenset[str]]:
        """Read every directory; returns the roles each key lost.

        ``strict`` (the manager's start): an unusable directory or key file raises
        ``KeyFileError``.  Otherwise (reloads) it fails closed: an unusable file is
        skipped and a directory that cannot be listed counts as empty, so removing a
        key file always revokes it; each problem is logged once until it changes.
        """
        roles: dict[str, set[str]] = {}
        names: dict[str, str] = {}
        stamps = {}
        bad: dict[Path, str] = {}
        missing: dict[str, str] = {}
        for role, path in self.dirs.items():
            stamps[role] = dir_stamp(path)  # before reading: a change meanwhile is seen next
            try:
                keys, problems = scan_dir(path)
            except KeyFileError as exc:
                if strict:
                    raise
                missing[role], keys, problems = str(exc), {}, {}
            if strict and problems:
                raise KeyFileError(next(iter(problems.values())))
            bad.update(problems)
            for key, name in keys.items():
                roles.setdefault(key, set()).add(role)
                names[key] = name
        self._report(bad, missing)
        before = self.roles
        self.roles = {key: frozenset(r) for key, r in roles.items()}
        self.names = names
        self._stamps = stamps
        lost = {key: had - self.roles.get(key, frozenset()) for key, had in before.items()}
        return {key: roles for key, roles in lost.items() if roles}

    def _report(self, bad: dict[Path, str], missing: dict[str, str]) -> None:
        """Log each unusable file and directory once (again only when it changes)."""
        for role, reason in missing.items():
            if self._missing.get(role) != reason:
                logger.error("no {} keys are listed: {}", role, reason)
        for role in self._missing.keys() - missing.keys():
            logger.info("{} keys: {} is readable again", role, self.dirs[role])
        self._missing = missing
        seen = {}
        for file, reason in bad.items():
            seen[file] = (file_stamp(file), reason)
            if self._bad.get(file) != seen[file]:
                logger.error("key file skipped, its key is not listed: {}", reason)
        self._bad = seen

    def changed(self) -> bool:
        return any(dir_stamp(path) != self._stamps.get(role) for role, path in self.dirs.items())

    def reload(self) -> dict[str, frozenset[str]]:
        """``load``, failing closed (see there); returns the roles each key lost."""
        revoked = self.load(strict=False)
        logger.info(
            "keys loaded: {}",
            ", ".join(f"{self.count(role)} {role}" for role in self.dirs) or "none",
        )
        return revoked

    def count(self, role: str) -> int:
        return sum(role in roles for roles in self.roles.values())

    def name(self, key: str) -> str:
        return self.names.get(key, key[:8])

    def check(self, key: str, msg: Message) -> Verdict:
        """May the holder of ``key`` send ``msg``?"""
        roles = self.roles.get(key)
        if roles is None:
            return Verdict.REVOKED
        kind = msg.TYPE
        if kind in AGENT_MESSAGES:
            return Verdict.ALLOWED if WORKER in roles else Verdict.FORBIDDEN
        if kind in CLIENT_MESSAGES:
            ok = CLIENT in roles or OPERATOR in roles
            return Verdict.ALLOWED if ok else Verdict.FORBIDDEN
        return Verdict.ALLOWED

    def has_role(self, key: str, role: str) -> bool:
        return role in self.roles.get(key, ())

    def sees_all(self, key: str) -> bool:
        return OPERATOR in self.roles.get(key, ())


def key_dirs(cfg: ManagerConfig) -> dict[str, str | None]:
    """The manager's allow-list directories by role."""
    return {WORKER: cfg.worker_keys, CLIENT: cfg.client_keys, OPERATOR: cfg.operator_keys}


def is_loopback(host: str) -> bool:
    """Is ``host`` (as given to ``--bind``) reachable from this machine only?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def forbidden_text(msg: Message) -> str:
    if msg.TYPE in AGENT_MESSAGES:
        return f"{msg.TYPE}: only worker keys register and run tasks"
    return f"{msg.TYPE}: only client and operator keys submit, read and act on tasks"


class CurveServer:
    """The manager's CURVE set-up: its key pair, the ZAP handler and the handshake monitors."""

    def __init__(self, keys: KeyPair, ring: KeyRing, counters: Counter[str]) -> None:
        self.keys = keys
        self.ring = ring
        self.counters = counters
        self._refusals = Throttle("refused connections")
        self._failures = Throttle("failed handshakes")
        self._auth: AsyncioAuthenticator | None = None
        self._monitors: dict[str, tuple[zmq.asyncio.Socket, asyncio.Task[None]]] = {}

    def start(self, ctx: zmq.asyncio.Context) -> None:
        """Start answering ZAP requests in ``ctx`` (before any socket binds)."""
        auth = AsyncioAuthenticator(context=ctx)
        auth.start()
        auth.configure_curve_callback(ROUTER_DOMAIN, self)
        auth.configure_curve_callback(PUB_DOMAIN, self)
        self._auth = auth

    def serve(self, sock: zmq.asyncio.Socket, domain: str) -> None:
        """Make ``sock`` a CURVE server in ``domain`` (before it binds)."""
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.public)
        sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)  # no ZAP handler: nobody gets in
        self.unserve(domain)
        events = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        monitor = sock.get_monitor_socket(events)
        task = asyncio.get_running_loop().create_task(self._watch(monitor, domain))
        self._monitors[domain] = (monitor, task)

    def unserve(self, domain: str) -> None:
        """Stop monitoring the socket of ``domain`` (before it is closed)."""
        entry = self._monitors.pop(domain, None)
        if entry is not None:
            monitor, task = entry
            task.cancel()
            monitor.close(linger=0)

    def stop(self) -> None:
        """Close the monitors and the ZAP socket (synchronously: the context can then end)."""
        for domain in list(self._monitors):
            self.unserve(domain)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's ZAP credentials check: is ``key`` (Z85) listed for ``domain``?"""
        try:
            text = key.decode("ascii", "replace")
            roles = self.ring.roles.get(text, frozenset())
            ok = WORKER in roles if domain == PUB_DOMAIN else bool(roles)
            if not ok:
                self.counters["auth_refused"] += 1
                if self._refusals.allow(text):
                    where = "broadcasts" if domain == PUB_DOMAIN else "requests"
                    logger.warning("refused a connection for {}: key {} is not listed", where, text)
            return ok
        except Exception:  # never let the authenticator's task die: nobody could connect
            logger.exception("ZAP check failed")
            return False

    async def _watch(self, monitor: zmq.asyncio.Socket, domain: str) -> None:
        """Count and log peers that fail the CURVE handshake (no CURVE, wrong server key)."""
        with contextlib.suppress(asyncio.CancelledError, zmq.ZMQError):
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())
                self.counters["handshakes_failed"] += 1
                if self._failures.allow(domain):
                    logger.warning(
                        "a peer failed the CURVE handshake on the {} socket "
                        "(no CURVE, or not this manager's public key): {}",
                        "PUB" if domain == PUB_DOMAIN else "ROUTER",
                        getattr(event["event"], "name", event["event"]),
                    )
