"""Which client waits for which task: results are pushed, not polled.  Pure; takes a clock.

A client watches tasks with ``watch`` (or ``submit`` with ``watch``); when a
watched task gets its final result the manager pushes it in a ``finished``
message.  Watches belong to the client's socket identity and lapse when the
client has been silent for ``ttl`` seconds (a waiting client sends an empty
``watch`` now and then), so a client that went away leaves nothing behind.
Only live tasks can be watched, so the table is bounded by the live tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

#: Seconds of silence after which a client's watches lapse.
WATCH_TTL = 60.0


class Watchers:
    def __init__(self, clock: Callable[[], float], ttl: float = WATCH_TTL) -> None:
        self._clock = clock
        self.ttl = ttl
        self._by_task: dict[str, dict[bytes, bool]] = {}  # task -> {client: brief}
        self._by_client: dict[bytes, set[str]] = {}
        self._heard: dict[bytes, float] = {}
        self._keys: dict[bytes, str] = {}  # client -> its CURVE key (when it has one)

    def __len__(self) -> int:
        return len(self._by_task)

    def watching(self, client: bytes) -> int:
        return len(self._by_client.get(client, ()))

    def heard(self, client: bytes) -> None:
        """Any message from ``client`` keeps its watches alive."""
        if client in self._by_client:
            self._heard[client] = self._clock()

    def watch(
        self, client: bytes, task_ids: Iterable[str], key: str = "", brief: bool = False
    ) -> None:
        """``client`` waits for ``task_ids``: their full states, or (``brief``) just statuses."""
        mine = self._by_client.setdefault(client, set())
        self._heard[client] = self._clock()
        if key:
            self._keys[client] = key
        for task_id in task_ids:
            mine.add(task_id)
            self._by_task.setdefault(task_id, {})[client] = brief

    def finished(self, task_id: str) -> dict[bytes, bool]:
        """The clients waiting for ``task_id`` (now final), each with whether it asked for
        ``brief`` pushes; they no longer watch it."""
        clients = self._by_task.pop(task_id, None)
        if clients is None:
            return {}
        for client in clients:
            mine = self._by_client.get(client)
            if mine is not None:
                mine.discard(task_id)
        return clients

    def expire(self) -> int:
        """Drop the watches of clients silent for ``ttl``; returns how many clients."""
        limit = self._clock() - self.ttl
        gone = [c for c, seen in self._heard.items() if seen < limit]
        for client in gone:
            self.drop(client)
        return len(gone)

    def drop_keys(self, keys: set[str]) -> int:
        """Drop the watches of the clients with these keys (revoked); returns how many clients."""
        gone = [client for client, key in self._keys.items() if key in keys]
        for client in gone:
            self.drop(client)
        return len(gone)

    def drop(self, client: bytes) -> None:
        """Forget ``client`` and its watches."""
        self._heard.pop(client, None)
        self._keys.pop(client, None)
        for task_id in self._by_client.pop(client, ()):
            clients = self._by_task.get(task_id)
            if clients is not None:
                clients.pop(client, None)
                if not clients:
                    del self._by_task[task_id]
