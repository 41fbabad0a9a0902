"""The JSON every ``--json`` prints (defined in ``protocol.views``, shared with the manager)."""

from protocol.views import (
    TASK_COUNTS,
    action_view,
    dumps,
    error_view,
    history_view,
    iso,
    purge_view,
    result_view,
    status_view,
    submission_view,
    success_rate,
    task_view,
    worker_view,
)

__all__ = [
    "TASK_COUNTS",
    "action_view",
    "dumps",
    "error_view",
    "history_view",
    "iso",
    "purge_view",
    "result_view",
    "status_view",
    "submission_view",
    "success_rate",
    "task_view",
    "worker_view",
]
