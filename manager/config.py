"""The manager's settings, as the CLI parsed them."""

from __future__ import annotations

from dataclasses import dataclass

from protocol import (
    DEFAULT_PORT,
    DEFAULT_WORKSPACE_ID,
    HEARTBEAT_INTERVAL,
    LIVENESS,
    MAX_MESSAGE_BYTES,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    pub_port: int = 0
    name: str = "manager"
    workspace: str = DEFAULT_WORKSPACE_ID
    policy: str = "best-fit"
    unmatched: str = "wait"  # or "strongest": run tasks nobody is skilled for on the strongest
    expect_workers: int = 0
    max_attempts: int = 3
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    liveness: int = LIVENESS
    max_message_bytes: int = MAX_MESSAGE_BYTES
    db: str = "taskmesh.db"
    fsync: bool = False
    max_queued: int = 1_000_000
    ready_file: str | None = None
