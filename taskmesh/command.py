"""What every client command shares: its connection, its exit codes, its errors.

``taskmesh.cli`` and the command modules beside it (``observe``,
``operate``) parse their options into a ``ClientConfig`` with
``client_config``, talk to the manager through ``connect``, and run their
coroutine with ``run``, which turns the client's exceptions into the
documented exit codes (``submit``'s: ``SUBMIT_EXIT_CODES``; the other commands
list theirs in their own help).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import click

from runtime.keys import KeyFileError, curve_client
from runtime.logs import configure_logging
from runtime.settings import from_cli
from taskmesh.client import Client
from taskmesh.config import ClientConfig
from taskmesh.errors import ManagerError, ManagerUnavailable
from taskmesh.watching import NoSuchWorker

T = TypeVar("T")

json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def client_config(values: dict[str, Any]) -> ClientConfig:
    cfg = from_cli(ClientConfig, values)
    configure_logging(cfg.log_level, cfg.log_format, "client")
    return cfg


def connect(cfg: ClientConfig) -> Client:
    """A client for the manager ``cfg`` names (made inside the command's event loop)."""
    curve = curve_client(cfg.secret_key, cfg.manager_key)
    return Client(cfg.host, cfg.port, timeout=cfg.request_timeout(), curve=curve)


class Failed(click.ClickException):
    """Some task ended without success (exit 1)."""

    exit_code = 1


class BadInput(click.ClickException):
    """A bad argument or task file (exit 2, like click's usage errors)."""

    exit_code = 2


class GaveUp(click.ClickException):
    """``--timeout`` passed before every task was final (exit 3)."""

    exit_code = 3


class Refused(click.ClickException):
    """The manager refused the request or did not answer (exit 4)."""

    exit_code = 4


#: What ``submit`` (with or without ``--wait``) exits with, for its help.
SUBMIT_EXIT_CODES = {
    0: "every task succeeded (or, without --wait, the tasks were accepted)",
    1: "with --wait, some task ended without success (failed, error, timeout, worker_lost, "
    "cancelled ...)",
    2: "bad arguments or task file (usage)",
    3: "gave up waiting (--timeout): the results so far and the pending ids are printed",
    4: "the manager refused or did not answer",
}


def run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except ManagerUnavailable as exc:
        raise Refused(f"{exc} (is it running? see --host/--port)") from None
    except ManagerError as exc:
        raise Refused(f"the manager refused: {exc}") from None
    except TimeoutError as exc:
        raise GaveUp(str(exc)) from None
    except KeyFileError as exc:
        raise BadInput(f"CURVE keys: {exc}") from None
    except NoSuchWorker as exc:
        raise Failed(str(exc)) from None
