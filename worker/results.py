"""What a worker reports: result maps as they travel, checked outputs, errors as data.

Used by ``worker.runner``: a result is built as the plain map that
``protocol.encode`` would make of a ``TaskResult`` (no record per task), an
output is checked before it is reported (msgpack-native, under
``MAX_ITEM_BYTES``), and an exception becomes a bounded ``ErrorInfo``.
"""

from __future__ import annotations

import traceback
from typing import Any

from protocol import MAX_ITEM_BYTES, TRACEBACK_LIMIT, ErrorInfo, ProtocolError, Results
from protocol.codec import encoded_size
from protocol.schema import check_native

Result = dict[str, Any]  # a TaskResult as it travels (see ``TaskRunner.result``)


def results_message(batch: list[Result]) -> dict[str, Any]:
    """The ``results`` message map for ``batch``."""
    return {"type": Results.TYPE, "results": batch}


def check_output(output: Any) -> None:
    """An output must be msgpack-native and small enough to travel with others."""
    kind = type(output)
    if kind is type(None) or kind is bool or kind is float:
        return
    if (kind is str or kind is bytes) and len(output) < 4096:
        return
    check_native(output, "output")
    size = encoded_size(output)
    if size > MAX_ITEM_BYTES:
        raise ProtocolError(f"output of {size} bytes is over the {MAX_ITEM_BYTES}-byte limit")


def error_info(exc: BaseException) -> ErrorInfo:
    """``exc`` as data: its type, message and traceback, each bounded."""
    text = "".join(traceback.format_exception(exc))
    return ErrorInfo(
        type=type(exc).__name__[:200],
        message=str(exc)[:TRACEBACK_LIMIT],
        traceback=text[-TRACEBACK_LIMIT:],
    )
