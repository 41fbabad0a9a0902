"""Numbers both ends of the wire agree on."""

from __future__ import annotations

from typing import Final

#: Bumped on any incompatible change to a message; exchanged in ``Register``/``Welcome``.
PROTOCOL_VERSION: Final = 1

#: Ceylon's default workspace name; a manager serves exactly one workspace.
DEFAULT_WORKSPACE_ID: Final = "taskmesh"

#: The manager's ROUTER port when none is given (Ceylon's admin default).
DEFAULT_PORT: Final = 8888

#: Largest encoded message a peer may send, enforced by the codec and ``zmq.MAXMSGSIZE``.
MAX_MESSAGE_BYTES: Final = 1 << 20

#: Largest encoded task or task output: several always fit in one message.
MAX_ITEM_BYTES: Final = MAX_MESSAGE_BYTES // 4

#: Heartbeat defaults: a peer is lost after ``LIVENESS`` silent intervals.
HEARTBEAT_INTERVAL: Final = 1.0
LIVENESS: Final = 3

#: Longest ``ErrorInfo.message`` and ``ErrorInfo.traceback`` a sender produces (characters).
TRACEBACK_LIMIT: Final = 4000

#: Longest task id (characters).
MAX_TASK_ID: Final = 1024

#: Longest agent id, name, role, workspace or task kind a manager registers (characters),
#: and most kinds one worker may advertise.
MAX_NAME: Final = 200
MAX_KINDS: Final = 1000

#: Most automatic retries a task may ask for (``TaskSpec.retries``), and the longest
#: wait before one retry (seconds): backoffs double up to this.
MAX_RETRIES: Final = 100
MAX_BACKOFF: Final = 3600.0

#: Most task ids one ``cancel`` or ``retry`` may name.
MAX_ACTION_IDS: Final = 1000
