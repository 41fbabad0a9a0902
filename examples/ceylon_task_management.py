#  Copyright 2024-Present, Syigen Ltd. and Syigen Private Limited. All rights reserved.
#  Licensed under the Apache License, Version 2.0 (See LICENSE.md or http://www.apache.org/licenses/LICENSE-2.0).
#
#  Port of Ceylon's task-manager tutorial to taskmesh.  The structure and the
#  logic are Ceylon's, on purpose; what changed:
#
#  - imports: ``ceylon.base.agents`` -> ``manager`` (Admin) and ``worker``
#    (Worker); ``ceylon.static_val`` -> ``protocol``;
#    ``from dataclasses import dataclass`` -> ``from protocol import dataclass``
#    (the same decorator, which also registers the class for ``protocol.loads``);
#  - ``pickle.dumps``/``pickle.loads`` -> ``protocol.dumps``/``protocol.loads``
#    (msgpack; only registered classes decode, nothing runs by name);
#  - ``end_task_management``, which the seed calls but never defines, is
#    defined: it logs the success rate and each result, then stops;
#  - ``main()`` reads the port from ``TASKMESH_PORT`` (default 8000, Ceylon's)
#    and passes it to the manager and the workers, so that tests can use a
#    free port;
#  - for ruff and mypy (strict): type annotations were added, ``List[Task]``
#    became ``list[Task]``, ``zip`` got ``strict=False`` (its default) and
#    the empty ``finally: pass`` after ``arun_admin`` was dropped.
#
#  Ceylon's bug is kept on purpose: ``assign_tasks`` *broadcasts* every
#  assignment, so each worker takes the first one it hears (task 1) and tasks
#  2 and 3 never run.  ``skill_routing.py`` beside this file does it right.

import asyncio
import os

from loguru import logger

import protocol
from manager import Admin
from protocol import DEFAULT_WORKSPACE_ID, AgentDetail, dataclass
from worker import Worker


# Data Structures
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


# Worker Agent
class WorkerAgent(Worker):
    def __init__(
        self,
        name: str,
        skill_level: int,
        workspace_id: str = DEFAULT_WORKSPACE_ID,
        admin_peer: str = "",
        admin_port: int = 8000,
    ) -> None:
        self.name = name
        self.skill_level = skill_level
        self.has_task = False
        super().__init__(
            name=name,
            workspace_id=workspace_id,
            admin_peer=admin_peer,
            admin_port=admin_port,
        )
        logger.info(f"Worker {name} initialized with skill level {skill_level}")

    async def on_message(self, agent_id: str, data: bytes, time: int) -> None:
        try:
            message = protocol.loads(data)

            if isinstance(message, TaskAssignment) and not self.has_task:
                logger.info(f"{self.name} received task: {message.task.description}")
                self.has_task = True

                # Simulate task execution
                await asyncio.sleep(message.task.difficulty)
                success = self.skill_level >= message.task.difficulty

                result = TaskResult(task_id=message.task.id, worker=self.name, success=success)
                # Use broadcast instead of direct message
                await self.broadcast(protocol.dumps(result))
                logger.info(f"{self.name} completed task {message.task.id} with success={success}")

        except Exception as e:
            logger.error(f"Error processing message in worker: {e}")

    async def run(self, inputs: bytes) -> None:
        logger.info(f"Worker {self.name} started")
        while True:  # noqa: ASYNC110 - Ceylon's code, kept as is
            await asyncio.sleep(0.1)


# Task Manager
class TaskManager(Admin):
    def __init__(
        self, tasks: list[Task], expected_workers: int, name: str = "task_manager", port: int = 8000
    ) -> None:
        super().__init__(name=name, port=port)
        self.tasks = tasks
        self.expected_workers = expected_workers
        self.task_results: list[TaskResult] = []
        self.tasks_assigned = False
        logger.info(f"Task Manager initialized with {len(tasks)} tasks")

    async def on_agent_connected(self, topic: str, agent: AgentDetail) -> None:
        await super().on_agent_connected(topic, agent)
        connected_count = len(self.get_connected_agents())
        logger.info(
            f"Worker connected. {connected_count}/{self.expected_workers} workers connected."
        )

        if connected_count == self.expected_workers and not self.tasks_assigned:
            logger.info("All workers connected. Starting task distribution.")
            await self.assign_tasks()

    async def assign_tasks(self) -> None:
        if self.tasks_assigned:
            return

        self.tasks_assigned = True
        connected_workers = self.get_connected_agents()

        for task, worker in zip(self.tasks, connected_workers, strict=False):
            assignment = TaskAssignment(task=task)
            # Broadcast the task assignment
            await self.broadcast(protocol.dumps(assignment))
            logger.info(f"Assigned task {task.id} to worker {worker.name}")

    async def on_message(self, agent_id: str, data: bytes, time: int) -> None:
        try:
            message = protocol.loads(data)
            if isinstance(message, TaskResult):
                self.task_results.append(message)
                logger.info(
                    f"Received result for task {message.task_id} from {message.worker}: "
                    f"{'Success' if message.success else 'Failure'}"
                )

                if len(self.task_results) == len(self.tasks):
                    await self.end_task_management()

        except Exception as e:
            logger.error(f"Error processing message in manager: {e}")

    # Not in the seed (it calls this method without defining it): report, then stop.
    async def end_task_management(self) -> None:
        succeeded = sum(1 for result in self.task_results if result.success)
        total = len(self.task_results)
        success_rate = succeeded / total if total else 0.0
        logger.info(f"All tasks completed. Success rate: {success_rate:.2%} ({succeeded}/{total})")

        logger.info("Detailed results:")
        for result in self.task_results:
            status = "Success" if result.success else "Failure"
            logger.info(f"Task {result.task_id} - Worker: {result.worker} - Status: {status}")

        await self.stop()

    async def run(self, inputs: bytes) -> None:
        logger.info("Task Manager started")
        while True:
            if len(self.task_results) == len(self.tasks):
                break
            await asyncio.sleep(0.1)


async def main() -> None:
    # taskmesh: the port is configurable (Ceylon's tutorial hard-codes 8000).
    port = int(os.environ.get("TASKMESH_PORT", "8000"))

    # Create tasks
    tasks = [
        Task(id=1, description="Simple calculation", difficulty=2),
        Task(id=2, description="Data analysis", difficulty=5),
        Task(id=3, description="Machine learning model training", difficulty=8),
    ]

    # Create task manager
    task_manager = TaskManager(tasks, expected_workers=3, port=port)
    admin_details = task_manager.details()

    # Create workers with proper admin_peer
    workers = [
        WorkerAgent("Junior", skill_level=3, admin_peer=admin_details.id, admin_port=port),
        WorkerAgent("Intermediate", skill_level=6, admin_peer=admin_details.id, admin_port=port),
        WorkerAgent("Senior", skill_level=9, admin_peer=admin_details.id, admin_port=port),
    ]

    try:
        logger.info("Starting task management system...")
        await task_manager.arun_admin(b"", workers)
    except KeyboardInterrupt:
        logger.info("Shutting down task management system...")


if __name__ == "__main__":
    logger.info("Initializing task management system...")
    asyncio.run(main())
