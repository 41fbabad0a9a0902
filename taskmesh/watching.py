"""What ``status --watch`` and ``inspect`` ask the manager, around one ``Client``."""

from __future__ import annotations

from protocol import StatusReply, WorkerInfo
from protocol.views import dumps, status_view
from taskmesh.client import Client
from taskmesh.live import Screen, watch
from taskmesh.statustext import status_text


class NoSuchWorker(LookupError):
    """``inspect`` named no worker the manager knows, or several."""


async def watch_status(
    client: Client, as_json: bool, verbose: bool, interval: float, frames: int | None = None
) -> None:
    """The status every ``interval`` seconds until cancelled (``frames`` times, if given)."""

    async def frame() -> str:
        reply = await client.status()
        return dumps(status_view(reply)) if as_json else status_text(reply, verbose)

    await watch(frame, interval, Screen(), frames)


def one_worker(reply: StatusReply, wanted: str) -> WorkerInfo:
    """The one worker of a ``status`` reply for ``wanted`` (an id, else a name)."""
    workers = reply.workers
    by_id = [w for w in workers if w.id == wanted]
    if by_id:
        return by_id[0]
    if len(workers) == 1:
        return workers[0]
    if not workers:
        raise NoSuchWorker(f"no worker {wanted!r} (see 'taskmesh status' for the workers)")
    ids = ", ".join(w.id for w in workers)
    raise NoSuchWorker(f"{len(workers)} workers are named {wanted!r}; name one by id: {ids}")
