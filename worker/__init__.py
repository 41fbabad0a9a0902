"""The worker process: Ceylon's ``Worker`` (agent layer) and the task runner attached to it.

May import ``protocol`` and ``runtime``; never ``manager`` or ``taskmesh``.
``Worker`` is the Ceylon API (subclass it for callbacks); ``build``/``serve``
make the taskmesh worker (``Worker`` + ``TaskRunner`` + ``Handlers``).
"""

from worker.agent import Worker
from worker.config import WorkerConfig
from worker.handlers import Handlers
from worker.hooks import WorkerHooks
from worker.runner import TaskRunner
from worker.server import build, serve
from worker.session import WorkerRefused
from worker.task import Retry, TaskContext, TaskFailed

__all__ = [
    "Handlers",
    "Retry",
    "TaskContext",
    "TaskFailed",
    "TaskRunner",
    "Worker",
    "WorkerConfig",
    "WorkerHooks",
    "WorkerRefused",
    "build",
    "serve",
]
