"""taskmesh for users: the ``Client`` and the ``taskmesh`` command.

``from taskmesh import Client`` is all a script that submits work needs; it
imports ``protocol``, ``runtime.sockets`` and pyzmq, nothing of the manager
or the worker.  The command (``taskmesh.cli``), the demo and the process
helpers sit on top of every other package and are imported only when used.
"""

from taskmesh.client import Client
from taskmesh.errors import ManagerError, ManagerUnavailable, WaitTimeout

__all__ = ["Client", "ManagerError", "ManagerUnavailable", "WaitTimeout"]
