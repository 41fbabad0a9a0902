"""The base class of every wire message (``protocol.messages``, ``protocol.operations``)."""

from __future__ import annotations

from typing import ClassVar


class Message:
    """Base of every wire message; ``TYPE`` is the value of the ``type`` key."""

    __slots__ = ()
    TYPE: ClassVar[str]
