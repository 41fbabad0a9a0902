"""What a ``Client`` call raises when the manager does not give what was asked."""

from __future__ import annotations

from protocol import TaskState


class ManagerUnavailable(ConnectionError):
    """No reply from the manager in time."""


class WaitTimeout(TimeoutError):
    """``wait`` gave up: ``done`` holds the final states it has, ``pending`` the other ids."""

    def __init__(self, message: str, done: list[TaskState], pending: list[str]) -> None:
        super().__init__(message)
        self.done = done
        self.pending = pending


class ManagerError(RuntimeError):
    """The manager refused a request; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
