"""``taskmesh manager`` (also ``python -m manager``): parse options, then serve."""

from __future__ import annotations

import asyncio
from typing import Any

import click
import zmq

from manager.config import ManagerConfig
from manager.httpd import HttpError
from manager.journal import JournalError
from manager.metrics import MetricsUnavailable
from runtime.keys import KeyFileError
from runtime.logs import configure_logging
from runtime.settings import from_cli, options


@click.command("manager", short_help="Run the manager (hands tasks to workers by skill).")
@options(ManagerConfig)
def manager_command(**values: Any) -> None:
    """Run the manager: listen on BIND:PORT and hand tasks to workers by skill."""
    cfg = from_cli(ManagerConfig, values)
    configure_logging(cfg.log_level, cfg.log_format, cfg.name)
    from manager.server import serve  # after logging is set up

    try:
        asyncio.run(serve(cfg))
    except zmq.ZMQError as exc:  # address in use, bad host
        raise click.ClickException(f"cannot listen on {cfg.bind}:{cfg.port}: {exc}") from None
    except JournalError as exc:  # --db in a missing directory, a directory, /proc ...
        raise click.ClickException(str(exc)) from None
    except KeyFileError as exc:  # --secret-key / --*-keys unusable
        raise click.ClickException(f"CURVE keys: {exc}") from None
    except (MetricsUnavailable, HttpError) as exc:  # no prometheus-client; port in use
        raise click.ClickException(str(exc)) from None


def main() -> None:
    manager_command(prog_name="python -m manager")
