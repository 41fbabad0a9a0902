"""Ceylon's task-manager tutorial with the assignment bug fixed: route each task by skill.

Same agents and the same three tasks as ``ceylon_task_management.py``, but

- each worker tells the manager its skill level (``send_direct`` to the
  ``admin_peer`` id it was given), since ``AgentDetail`` carries no skill;
- once every expected worker has reported, the manager gives each task, easiest
  first, to the least skilled free worker whose skill is at least the task's
  difficulty (each worker gets at most one task) and sends it with
  ``send_direct`` to that worker alone, instead of broadcasting it;
- the worker replies with ``send_direct`` to the agent that sent the task;
- when every task has a result, the manager prints them and a summary line,
  and stops.

A task takes ``difficulty x TASKMESH_TIME_SCALE`` seconds (default 0.25, so the
whole run takes about two and a half seconds).  ``TASKMESH_PORT`` sets the
manager's port (default 8000).

    python examples/skill_routing.py
"""

from __future__ import annotations

import asyncio
import os

from loguru import logger

import protocol
from manager import Admin
from protocol import DEFAULT_WORKSPACE_ID, AgentDetail, dataclass
from worker import Worker

TIME_SCALE = float(os.environ.get("TASKMESH_TIME_SCALE", "0.25"))


@dataclass
class Task:
    id: int
    description: str
    difficulty: int  # 1-10 scale


@dataclass
class TaskAssignment:
    task: Task


@dataclass
class TaskResult:
    task_id: int
    worker: str
    success: bool


@dataclass
class SkillReport:
    """A worker's introduction to the manager: who it is and what it can do."""

    worker: str
    skill_level: int


def plan(tasks: list[Task], skills: dict[str, int]) -> list[tuple[Task, str | None]]:
    """Pair each task with the least skilled free agent able to do it (``None``: nobody is).

    Tasks are taken easiest first, so a strong worker is kept for the task that
    needs it; each agent gets at most one task.
    """
    free = sorted(skills, key=lambda agent_id: skills[agent_id])
    pairs: list[tuple[Task, str | None]] = []
    for task in sorted(tasks, key=lambda t: t.difficulty):
        chosen = next((a for a in free if skills[a] >= task.difficulty), None)
        if chosen is not None:
            free.remove(chosen)
        pairs.append((task, chosen))
    return pairs


class WorkerAgent(Worker):
    def __init__(
        self,
        name: str,
        skill_level: int,
        workspace_id: str = DEFAULT_WORKSPACE_ID,
        admin_peer: str = "",
        admin_port: int = 8000,
    ) -> None:
        self.skill_level = skill_level
        self.has_task = False
        super().__init__(
            name=name, workspace_id=workspace_id, admin_peer=admin_peer, admin_port=admin_port
        )

    async def on_message(self, agent_id: str, data: bytes, time: int) -> None:
        try:
            message = protocol.loads(data)
            if not isinstance(message, TaskAssignment):
                return
            if self.has_task:
                logger.warning(f"{self.name} is busy; ignoring task {message.task.id}")
                return
            self.has_task = True
            task = message.task
            logger.info(f"{self.name} received task {task.id}: {task.description}")
            await asyncio.sleep(task.difficulty * TIME_SCALE)
            success = self.skill_level >= task.difficulty
            result = TaskResult(task_id=task.id, worker=self.name, success=success)
            await self.send_direct(agent_id, protocol.dumps(result))
            logger.info(f"{self.name} completed task {task.id} with success={success}")
        except Exception as e:
            logger.error(f"Error processing message in worker: {e}")

    async def run(self, inputs: bytes) -> None:
        # run() starts once this worker is connected: introduce ourselves.
        report = SkillReport(worker=self.name, skill_level=self.skill_level)
        await self.send_direct(self.admin_peer, protocol.dumps(report))
        logger.info(f"Worker {self.name} started (skill {self.skill_level})")
        # Returning is fine: the agent keeps serving until it is stopped.


class TaskManager(Admin):
    def __init__(
        self, tasks: list[Task], expected_workers: int, name: str = "task_manager", port: int = 8000
    ) -> None:
        super().__init__(name=name, port=port)
        self.tasks = tasks
        self.expected_workers = expected_workers
        self.skills: dict[str, int] = {}
        self.assigned: dict[int, str] = {}  # task id -> worker name
        self.task_results: list[TaskResult] = []
        self.tasks_assigned = False
        self.finished = asyncio.Event()

    async def on_agent_connected(self, topic: str, agent: AgentDetail) -> None:
        await super().on_agent_connected(topic, agent)
        logger.info(f"{agent.name} connected ({len(self.get_connected_agents())} agents)")

    async def assign_tasks(self) -> None:
        if self.tasks_assigned:
            return
        self.tasks_assigned = True
        for task, agent_id in plan(self.tasks, self.skills):
            agent = self.get_agent_by_id(agent_id) if agent_id is not None else None
            if agent is None:
                logger.warning(f"No connected worker can do task {task.id}: recorded as failed")
                self.task_results.append(TaskResult(task_id=task.id, worker="", success=False))
                continue
            await self.send_direct(agent.id, protocol.dumps(TaskAssignment(task=task)))
            self.assigned[task.id] = agent.name
            logger.info(
                f"Assigned task {task.id} (difficulty {task.difficulty}) to {agent.name} "
                f"(skill {self.skills[agent.id]})"
            )
        await self.check_done()

    async def on_message(self, agent_id: str, data: bytes, time: int) -> None:
        try:
            message = protocol.loads(data)
            if isinstance(message, SkillReport):
                self.skills[agent_id] = message.skill_level
                logger.info(f"{message.worker} reports skill {message.skill_level}")
                if len(self.skills) == self.expected_workers:
                    await self.assign_tasks()
            elif isinstance(message, TaskResult):
                if self.assigned.get(message.task_id) != message.worker:
                    logger.warning(f"Unexpected result for task {message.task_id}: ignored")
                    return
                self.task_results.append(message)
                status = "Success" if message.success else "Failure"
                logger.info(
                    f"Received result for task {message.task_id} from {message.worker}: {status}"
                )
                await self.check_done()
        except Exception as e:
            logger.error(f"Error processing message in manager: {e}")

    async def check_done(self) -> None:
        if len(self.task_results) == len(self.tasks):
            await self.end_task_management()

    async def end_task_management(self) -> None:
        by_id = {task.id: task for task in self.tasks}
        for result in sorted(self.task_results, key=lambda r: r.task_id):
            task = by_id[result.task_id]
            status = "success" if result.success else "failure"
            print(
                f"task {task.id} ({task.description}, difficulty {task.difficulty}) -> "
                f"{result.worker or 'nobody'}: {status}"
            )
        succeeded = sum(1 for result in self.task_results if result.success)
        workers = {result.worker for result in self.task_results if result.worker}
        print(
            f"{succeeded}/{len(self.tasks)} tasks succeeded on {len(workers)} distinct workers",
            flush=True,
        )
        self.finished.set()
        await self.stop()

    async def run(self, inputs: bytes) -> None:
        logger.info("Task Manager started")
        await self.finished.wait()


async def main() -> None:
    port = int(os.environ.get("TASKMESH_PORT", "8000"))
    tasks = [
        Task(id=1, description="Simple calculation", difficulty=2),
        Task(id=2, description="Data analysis", difficulty=5),
        Task(id=3, description="Machine learning model training", difficulty=8),
    ]
    task_manager = TaskManager(tasks, expected_workers=3, port=port)
    admin_id = task_manager.details().id
    workers = [
        WorkerAgent("Junior", skill_level=3, admin_peer=admin_id, admin_port=port),
        WorkerAgent("Intermediate", skill_level=6, admin_peer=admin_id, admin_port=port),
        WorkerAgent("Senior", skill_level=9, admin_peer=admin_id, admin_port=port),
    ]
    await task_manager.arun_admin(b"", workers)


if __name__ == "__main__":
    asyncio.run(main())
