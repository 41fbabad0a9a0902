"""Settings every agent process shares, declared once (see ``runtime.settings``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol import (
    DEFAULT_PORT,
    DEFAULT_WORKSPACE_ID,
    HEARTBEAT_INTERVAL,
    LIVENESS,
    MAX_MESSAGE_BYTES,
)
from runtime.logs import FORMATS, LEVELS
from runtime.settings import check, setting


def log_level(default: str = "INFO") -> Any:
    """``--log-level`` / ``TASKMESH_LOG_LEVEL``: the same levels for every command."""
    return setting(default, help="Log verbosity (stderr).", choices=LEVELS)


def log_format() -> Any:
    """``--log-format`` / ``TASKMESH_LOG_FORMAT``: text lines, or JSON records for machines."""
    return setting(
        "text", help="Log format on stderr: text lines, or JSON records.", choices=FORMATS
    )


def manager_port(*, bind: bool = False) -> Any:
    """``--port`` / ``TASKMESH_PORT``: the manager's ROUTER port, for every process.

    ``bind``: the manager's own setting (the port it binds); the others connect to it.
    """
    help = (
        "Port to bind for workers and clients (ROUTER; 0: any free)."
        if bind
        else "The manager's port to connect to (its ROUTER)."
    )
    return setting(DEFAULT_PORT, help=help, low=0, high=65535, metavar="PORT")


def manager_host() -> Any:
    """``--host`` / ``TASKMESH_HOST``: where workers and clients find the manager."""
    return setting("127.0.0.1", help="The manager's address (host name or IP).", metavar="HOST")


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """What a manager and a worker both have: workspace, heartbeats, limits, logging."""

    workspace: str = setting(
        DEFAULT_WORKSPACE_ID, help="Workspace id; a worker must name its manager's."
    )
    heartbeat_interval: float = setting(
        HEARTBEAT_INTERVAL,
        help="Seconds between heartbeats (a worker takes its manager's value once connected).",
        low=0.01,
        high=60,
    )
    liveness: int = setting(
        LIVENESS,
        help="Heartbeat intervals of silence before a peer counts as lost.",
        low=1,
        high=100,
    )
    max_message_bytes: int = setting(
        MAX_MESSAGE_BYTES, help="Largest message accepted.", low=4096, cli=False
    )
    log_level: str = log_level()
    log_format: str = log_format()

    def __post_init__(self) -> None:
        check(self)

    @property
    def window(self) -> float:
        """Seconds of silence after which a peer is lost."""
        return self.heartbeat_interval * self.liveness


def secret_key() -> Any:
    """``--secret-key`` / ``TASKMESH_SECRET_KEY``: this process's CURVE key pair; CURVE on."""
    return setting(
        None,
        help="CURVE secret key file (NAME.key_secret from 'taskmesh keys generate'); "
        "turns encryption and key checks on.",
        metavar="FILE",
    )


def manager_key() -> Any:
    """``--manager-key`` / ``TASKMESH_MANAGER_KEY``: the manager's public key (CURVE)."""
    return setting(
        None,
        help="The manager's public key file (its NAME.key); with --secret-key.",
        metavar="FILE",
    )


def check_curve_pair(secret: str | None, manager: str | None) -> None:
    """A worker or client needs both CURVE files or neither."""
    if bool(secret) != bool(manager):
        raise ValueError("--secret-key and --manager-key go together (CURVE needs both)")
