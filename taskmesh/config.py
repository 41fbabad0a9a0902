"""Settings of the client commands (submit, status, results) and of the demo."""

from __future__ import annotations

from dataclasses import dataclass

from manager.config import policy
from runtime.config import log_format, log_level, manager_host, manager_port
from runtime.settings import check, setting, table


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    host: str = manager_host()
    port: int = manager_port("The manager's port (its ROUTER).")
    timeout: float | None = setting(
        None,
        help="Give up after this many seconds [default: 10 for an answer; "
        "no limit for submit --wait].",
        low=0.1,
        metavar="SECONDS",
    )
    log_level: str = log_level("WARNING")
    log_format: str = log_format()

    def __post_init__(self) -> None:
        check(self)

    def request_timeout(self) -> float:
        return 10.0 if self.timeout is None else self.timeout


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    time_scale: float = setting(
        0.25,
        help="Seconds per difficulty point (the seed uses 1).",
        low=0,
        high=10,
        env="TASKMESH_DEMO_TIME_SCALE",
    )
    policy: str = policy()
    log_level: str = log_level("WARNING")

    def __post_init__(self) -> None:
        check(self)


def settings_table() -> str:
    """Every environment variable of every command, as one Markdown table (README)."""
    from manager.config import ManagerConfig
    from worker.config import WorkerConfig

    rows: dict[tuple[str, str], tuple[list[str], dict[str, str], str]] = {}
    for who, cls in (
        ("manager", ManagerConfig),
        ("worker", WorkerConfig),
        ("client", ClientConfig),
    ):
        for env, flag, default, meaning in table(cls):
            users, defaults, _ = rows.setdefault((env, flag), ([], {}, meaning))
            users.append(who)
            defaults[who] = default
    lines = ["| variable | option | used by | default | meaning |", "|---|---|---|---|---|"]
    for (env, flag), (users, defaults, meaning) in rows.items():
        values = set(defaults.values())
        if len(values) == 1:
            default = values.pop()
        else:
            default = "; ".join(f"{who}: {value}" for who, value in defaults.items())
        lines.append(f"| `{env}` | `{flag}` | {', '.join(users)} | {default} | {meaning} |")
    return "\n".join(lines)
