"""Who is there: the manager's view of registered agents.  Pure; takes a clock.

Liveness: an agent silent for the window (``interval * liveness``) becomes
``unreachable``: it keeps its state underneath (``before``) and its tasks,
and gets no new work; any message from it restores it.  Silent for the
window and a further ``grace``, it is expired: the caller drops it.  An
agent a message could not be sent to (``missed``: its connection is closed,
its process most likely gone) gets no grace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from protocol import AgentDetail, AgentState, WorkerInfo


@dataclass(slots=True)
class AgentRecord:
    id: str
    name: str
    role: str
    skill: int
    capacity: int
    kinds: frozenset[str]
    state: AgentState
    last_seen: float
    registered: float
    running: dict[str, int] = field(default_factory=dict)  # task id -> attempt
    completed: int = 0
    drain_requested: bool = False  # said ``drain`` while pending: draining once ready
    before: AgentState = AgentState.PENDING  # while unreachable: the state it returns to
    missed: bool = False  # a message to it could not be sent: no grace; must register again
    #: The ROUTER identity of the connection it registered on (what is sent to).
    route: bytes = b""
    #: The CURVE key it registered with (``""`` without CURVE): its id is bound to it.
    key: str = ""

    @property
    def announced(self) -> bool:
        """Connected or draining (``joined`` was published), reachable or not."""
        state = self.before if self.state == AgentState.UNREACHABLE else self.state
        return state != AgentState.PENDING

    @property
    def detail(self) -> AgentDetail:
        return AgentDetail(name=self.name, id=self.id, role=self.role)

    @property
    def free(self) -> int:
        if self.state != AgentState.CONNECTED:
            return 0
        return max(0, self.capacity - len(self.running))

    def info(self, now: float) -> WorkerInfo:
        return WorkerInfo(
            id=self.id,
            name=self.name,
            role=self.role,
            skill=self.skill,
            capacity=self.capacity,
            kinds=sorted(self.kinds),
            running=len(self.running),
            completed=self.completed,
            state=self.state,
            silent_for=max(0.0, now - self.last_seen),
        )


class Registry:
    """Registered agents keyed by id, with heartbeat expiry.

    An agent is unreachable when nothing arrived from it for ``interval *
    liveness`` seconds and expired ``grace`` seconds later, whether it is
    pending or connected.
    """

    def __init__(
        self, clock: Callable[[], float], interval: float, liveness: int, grace: float = 0.0
    ) -> None:
        self._clock = clock
        self.window = interval * liveness
        self.grace = grace
        self._agents: dict[str, AgentRecord] = {}
        self._routes: dict[bytes, AgentRecord] = {}

    def __len__(self) -> int:
        return len(self._agents)

    def __iter__(self) -> Iterator[AgentRecord]:
        return iter(list(self._agents.values()))

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._agents

    def get(self, agent_id: str) -> AgentRecord | None:
        return self._agents.get(agent_id)

    def by_route(self, route: bytes) -> AgentRecord | None:
        """The agent registered on the connection with ROUTER identity ``route``."""
        return self._routes.get(route)

    def add(
        self,
        agent_id: str,
        *,
        name: str,
        role: str,
        skill: int = 0,
        capacity: int = 0,
        kinds: frozenset[str] = frozenset(),
        route: bytes | None = None,
        key: str = "",
    ) -> tuple[AgentRecord, AgentRecord | None]:
        """Register (or re-register) an agent as pending; returns it and any record it replaced.

        ``route``: the connection's ROUTER identity (default: the agent id).
        """
        now = self._clock()
        old = self.remove(agent_id)
        rec = AgentRecord(
            id=agent_id,
            name=name,
            role=role,
            skill=skill,
            capacity=capacity,
            kinds=kinds,
            state=AgentState.PENDING,
            last_seen=now,
            registered=now,
            route=agent_id.encode() if route is None else route,
            key=key,
        )
        self._agents[agent_id] = rec
        self._routes[rec.route] = rec
        return rec, old

    def touch(self, agent_id: str) -> AgentRecord | None:
        """Heard from ``agent_id`` now: alive, and reachable again if it was not."""
        rec = self._agents.get(agent_id)
        if rec is not None:
            rec.last_seen = self._clock()
            if rec.state == AgentState.UNREACHABLE:
                rec.state = rec.before
        return rec

    def set_unreachable(self, rec: AgentRecord) -> bool:
        """Mark ``rec`` unreachable (no new work, keeps its tasks); ``False`` if it was."""
        if rec.state == AgentState.UNREACHABLE:
            return False
        rec.before, rec.state = rec.state, AgentState.UNREACHABLE
        return True

    def mark_unreachable(self, heard_until: float | None = None) -> list[AgentRecord]:
        """Mark agents silent for longer than the window unreachable; returns those newly so."""
        limit = (self._clock() if heard_until is None else heard_until) - self.window
        return [r for r in self if r.last_seen < limit and self.set_unreachable(r)]

    def set_state(self, agent_id: str, state: AgentState) -> AgentRecord | None:
        rec = self._agents.get(agent_id)
        if rec is not None:
            rec.state = state
        return rec

    def remove(self, agent_id: str) -> AgentRecord | None:
        rec = self._agents.pop(agent_id, None)
        if rec is not None and self._routes.get(rec.route) is rec:
            del self._routes[rec.route]
        return rec

    def expired(self, heard_until: float | None = None) -> list[AgentRecord]:
        """Agents silent for longer than the window and the grace (not removed).

        The grace is not given to an agent a message could not be sent to.

        ``heard_until`` is when the socket was last read to the end: silence is
        only counted up to then, so a manager busy with a backlog never takes
        the heartbeats still waiting in it for silence.
        """
        limit = (self._clock() if heard_until is None else heard_until) - self.window
        return [r for r in self if r.last_seen < limit - (0.0 if r.missed else self.grace)]

    def pending(self) -> list[AgentRecord]:
        return [rec for rec in self._agents.values() if rec.state == AgentState.PENDING]

    def connected(self) -> list[AgentRecord]:
        """Announced agents: connected or draining, reachable or not."""
        return [rec for rec in self._agents.values() if rec.announced]
