"""A worker's settings: one declaration each (default, help, environment variable)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from runtime.config import (
    AgentConfig,
    check_curve_pair,
    manager_host,
    manager_key,
    manager_port,
    secret_key,
)
from runtime.settings import setting


@dataclass(frozen=True, kw_only=True)
class WorkerConfig(AgentConfig):
    name: str = setting(
        help="The worker's display name.",
        env="TASKMESH_WORKER_NAME",
        default_factory=socket.gethostname,
        default_text="the host name",
    )
    agent_id: str = setting(
        "",
        help="Stable agent id, unique among live workers (default: name plus a random suffix).",
        env="TASKMESH_WORKER_ID",
        flag="--id",
    )
    skill: int = setting(
        0,
        help="Skill level 0-10: the manager gives it tasks of difficulty up to its skill; "
        "harder ones wait for a stronger worker (unless the manager runs with --unmatched "
        "strongest or fail).",
        low=0,
        high=10,
        required=True,
    )
    capacity: int = setting(1, help="Tasks run at the same time.", low=1, high=10_000)
    host: str = manager_host()
    port: int = manager_port()
    time_scale: float = setting(
        1.0, help="Seconds per difficulty point for 'simulate' tasks.", low=0, high=3600
    )
    handlers: tuple[str, ...] = setting(
        (),
        help="module[:attr] naming a dict of kind -> function to run (repeatable).",
        flag="--handlers",
        metavar="MODULE",
    )
    process_kinds: tuple[str, ...] = setting(
        (),
        help="Run tasks of this kind each in a process of its own (CPU-bound, killable). "
        "Repeatable.",
        flag="--process-kind",
        metavar="KIND",
    )
    process_pool: int = setting(
        0,
        help="Warm processes kept for --process-kind tasks, reused task after task "
        "(0: a fresh process per task).",
        low=0,
        high=256,
    )
    app_dir: str = setting(
        ".",
        help="Directory appended to sys.path before --handlers are imported.",
        metavar="DIR",
    )
    grace: float = setting(
        30.0,
        help="On SIGTERM, seconds to finish running tasks before cancelling them.",
        low=0,
        high=3600,
    )
    secret_key: str | None = secret_key()
    manager_key: str | None = manager_key()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name.strip():
            raise ValueError("--name: a worker needs a non-empty name")
        check_curve_pair(self.secret_key, self.manager_key)
