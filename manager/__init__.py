"""The taskmesh manager: Ceylon's ``Admin`` (agent layer) and the task manager on top."""

from manager.admin import Admin
from manager.client import Client, ManagerError, ManagerUnavailable
from manager.service import TaskManager

__all__ = ["Admin", "Client", "ManagerError", "ManagerUnavailable", "TaskManager"]
