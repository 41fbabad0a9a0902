"""The one exception type that leaves the codec."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Raised for any input that is not a valid taskmesh message or payload.

    ``code`` is a short machine-readable reason that is sent back to the peer
    in an ``Error`` message; ``str(err)`` is the human-readable explanation.
    """

    def __init__(self, message: str, code: str = "bad_message") -> None:
        super().__init__(message)
        self.code = code
