"""taskmesh for users: the ``Client`` and the ``taskmesh`` command.

``from taskmesh import Client`` is all a script that submits work needs; it
imports ``protocol``, ``runtime``'s socket helpers and pyzmq, nothing of the
manager or the worker (nor sqlite3 or click).  The command (``taskmesh.cli``),
the demo and the process helpers sit on top of the agent packages and are
imported only when used.

May import ``protocol``, ``runtime``, ``manager`` and ``worker``; never ``bench``.
"""

from taskmesh.client import Client
from taskmesh.errors import ManagerError, ManagerUnavailable, WaitTimeout

__all__ = ["Client", "ManagerError", "ManagerUnavailable", "WaitTimeout"]
