"""The JSON every ``--json`` prints (defined in ``protocol.views``, shared with the manager)."""

from protocol.views import (
    TASK_COUNTS,
    dumps,
    error_view,
    iso,
    result_view,
    status_view,
    submission_view,
    success_rate,
    task_view,
    worker_view,
)

__all__ = [
    "TASK_COUNTS",
    "dumps",
    "error_view",
    "iso",
    "result_view",
    "status_view",
    "submission_view",
    "success_rate",
    "task_view",
    "worker_view",
]
