"""The manager's settings: one declaration each (default, help, environment variable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from manager.scheduler import POLICIES
from runtime.config import AgentConfig, manager_port, secret_key
from runtime.settings import setting

#: How a task that no connected worker can run is handled.
UNMATCHED = ("wait", "strongest", "fail")


def policy() -> Any:
    """``--policy`` / ``TASKMESH_POLICY``: how a worker is chosen for a task."""
    return setting("best-fit", help="How a worker is chosen for a task.", choices=tuple(POLICIES))


@dataclass(frozen=True, kw_only=True)
class ManagerConfig(AgentConfig):
    name: str = setting("manager", help="The manager's display name.", env="TASKMESH_MANAGER_NAME")
    bind: str = setting(
        "127.0.0.1",
        help="Address to listen on ('0.0.0.0': every interface).",
        metavar="ADDRESS",
    )
    port: int = manager_port(bind=True)
    pub_port: int = setting(
        0,
        help="Port to publish broadcasts on (PUB; 0: any free).",
        low=0,
        high=65535,
        metavar="PORT",
    )
    policy: str = policy()
    unmatched: str = setting(
        "wait",
        help="A task no connected worker can run (kind or skill): wait for one (status and "
        "results say why), 'strongest': too hard ones run on the strongest free worker of "
        "their kind, 'fail': record it failed at once.",
        choices=UNMATCHED,
    )
    expect_workers: int = setting(
        0,
        help="Hold assignments until this many workers are connected (once, at start).",
        low=0,
        high=100_000,
    )
    expect_timeout: float = setting(
        60.0,
        help="Seconds to hold assignments for --expect-workers before assigning anyway.",
        low=0,
        high=86_400,
    )
    requeue_grace: float | None = setting(
        None,
        help="Seconds a worker silent for the liveness window stays 'unreachable' (keeping its "
        "tasks, getting no new ones) before it is dropped and its tasks are re-queued.",
        low=0,
        high=86_400,
        metavar="SECONDS",
        default_text="one liveness window",
    )
    max_attempts: int = setting(
        3, help="Give a task up after losing its worker this many times.", low=1, high=100
    )
    db: str = setting(
        "taskmesh.db",
        help="SQLite journal file. ':memory:' keeps no file: a restart forgets every task, and "
        "only live tasks and the last 100,000 results are kept (in memory, about 100 MB at most "
        "for small tasks; older results read as unknown).",
        metavar="PATH",
    )
    fsync: bool = setting(
        False, help="fsync every journal commit (survives power loss, not just kills)."
    )
    prefetch: int = setting(
        1,
        help="Jobs per unit of capacity a worker may hold waiting for a slot, for kinds whose "
        "tasks take under 0.1 s (long tasks go only to free capacity); 0: none.",
        low=0,
        high=100,
    )
    max_queued: int = setting(
        1_000_000, help="Refuse submissions ('busy') beyond this many queued tasks.", low=1
    )
    metrics_port: int | None = setting(
        None,
        help="Serve Prometheus metrics (/metrics) and a live status page (/) over HTTP on this "
        "port, on --bind, unauthenticated (0: any free; needs the 'metrics' extra).",
        low=0,
        high=65535,
        metavar="PORT",
    )
    ready_file: str | None = setting(
        None, help="Write the bound endpoints here as JSON once listening.", metavar="PATH"
    )
    secret_key: str | None = secret_key()
    worker_keys: str | None = setting(
        None,
        help="With --secret-key: directory of the public keys (*.key) allowed to be workers.",
        metavar="DIR",
    )
    client_keys: str | None = setting(
        None,
        help="With --secret-key: directory of the public keys allowed to be clients "
        "(each sees only its own tasks).",
        metavar="DIR",
    )
    operator_keys: str | None = setting(
        None,
        help="With --secret-key: directory of the public keys of clients that see and "
        "act on every task.",
        metavar="DIR",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.secret_key and (self.worker_keys or self.client_keys or self.operator_keys):
            raise ValueError("--worker-keys, --client-keys and --operator-keys need --secret-key")

    @property
    def curve(self) -> bool:
        """CURVE encryption and key allow-lists are on."""
        return bool(self.secret_key)

    @property
    def unreachable_grace(self) -> float:
        """Seconds an unreachable worker keeps its tasks (``--requeue-grace``, else the window)."""
        return self.window if self.requeue_grace is None else self.requeue_grace
