"""The manager process: Ceylon's ``Admin`` (agent layer) and the task layer attached to it.

May import ``protocol`` and ``runtime``; never ``worker`` or ``taskmesh``.
``Admin`` is the Ceylon API (subclass it for callbacks); ``build``/``serve``
make the taskmesh manager (``Admin`` + ``TaskService`` + ``Journal``).
"""

from manager.admin import Admin
from manager.config import ManagerConfig
from manager.hooks import AdminHooks
from manager.server import build, serve
from manager.service import TaskService

__all__ = ["Admin", "AdminHooks", "ManagerConfig", "TaskService", "build", "serve"]
