"""The taskmesh worker: Ceylon's ``Worker`` (agent layer) and the task runner on top."""

from worker.agent import Worker, WorkerRefused
from worker.handlers import Handlers, TaskContext, TaskFailed
from worker.runner import TaskWorker

__all__ = ["Handlers", "TaskContext", "TaskFailed", "TaskWorker", "Worker", "WorkerRefused"]
