"""A worker's settings, as the CLI parsed them."""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol import (
    DEFAULT_PORT,
    DEFAULT_WORKSPACE_ID,
    HEARTBEAT_INTERVAL,
    LIVENESS,
    MAX_MESSAGE_BYTES,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    name: str
    skill: int
    capacity: int = 1
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workspace: str = DEFAULT_WORKSPACE_ID
    agent_id: str = ""
    time_scale: float = 1.0
    handlers: tuple[str, ...] = field(default_factory=tuple)
    process_kinds: tuple[str, ...] = field(default_factory=tuple)
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    liveness: int = LIVENESS
    max_message_bytes: int = MAX_MESSAGE_BYTES
    grace: float = 30.0
