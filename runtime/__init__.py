"""The agent runtime both processes share: what a manager and a worker have in common.

``AgentBase`` (identity, peers, Ceylon's callbacks and their dispatcher),
supervision of an agent's loops, ZeroMQ socket set-up, signal handling,
logging set-up, and the declaration of settings (``runtime.settings``).

May import ``protocol`` only (and pyzmq, loguru, click); never ``manager``,
``worker`` or ``taskmesh``.
"""
