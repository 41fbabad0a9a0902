"""Settings of the client commands (submit, status, results) and of the demo."""

from __future__ import annotations

from dataclasses import dataclass

from manager.config import policy
from runtime.config import (
    check_curve_pair,
    log_format,
    log_level,
    manager_host,
    manager_key,
    manager_port,
    secret_key,
)
from runtime.settings import check, setting, table


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    host: str = manager_host()
    port: int = manager_port()
    timeout: float | None = setting(
        None,
        help="Give up after this many seconds [default: 10 for an answer; "
        "no limit for submit --wait].",
        low=0.1,
        metavar="SECONDS",
    )
    log_level: str = log_level("WARNING")
    log_format: str = log_format()
    secret_key: str | None = secret_key()
    manager_key: str | None = manager_key()

    def __post_init__(self) -> None:
        check(self)
        check_curve_pair(self.secret_key, self.manager_key)

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
    """Every environment variable of every command, as one Markdown table (README).

    A variable several commands read is one row; where its default or its
    meaning differs between them (``TASKMESH_PORT``: the port a manager binds,
    the port the others connect to), the cell says which is whose.
    """
    from manager.config import ManagerConfig
    from worker.config import WorkerConfig

    rows: dict[tuple[str, str], tuple[dict[str, str], dict[str, str]]] = {}
    for who, cls in (
        ("manager", ManagerConfig),
        ("worker", WorkerConfig),
        ("client", ClientConfig),
        ("demo", DemoConfig),
    ):
        for env, flag, default, meaning in table(cls):
            defaults, meanings = rows.setdefault((env, flag), ({}, {}))
            defaults[who] = default
            meanings[who] = meaning
    lines = ["| variable | option | used by | default | meaning |", "|---|---|---|---|---|"]
    for (env, flag), (defaults, meanings) in rows.items():
        users = ", ".join(defaults)
        lines.append(f"| `{env}` | `{flag}` | {users} | {_whose(defaults)} | {_whose(meanings)} |")
    return "\n".join(lines)


def _whose(values: dict[str, str]) -> str:
    """One value if every command has the same, else ``who, who: value; who: value``."""
    by_value: dict[str, list[str]] = {}
    for who, value in values.items():
        by_value.setdefault(value, []).append(who)
    if len(by_value) == 1:
        return next(iter(by_value))
    return "; ".join(f"{', '.join(who)}: {value.rstrip('.')}" for value, who in by_value.items())
