"""Temporal's side of the task service: the `WorkflowEngine` port as typed workflow handles.

Thin on purpose: it starts, updates, cancels and describes workflows with Factory's search
attributes and id-reuse rules, and turns Temporal's errors into the lifecycle's. Every rule about
which state allows what lives in `factory/tasks/service.py`; repo checks in `factory/tasks/ports.py`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from factory.config import FactoryConfig
from factory.config_sections import ScheduleConfig
from factory.contracts import AnswerInput, TaskInput, WorkflowRunInput
from factory.domain.lifecycle import AlreadyRunning, AnswerRefused, LaunchError
from factory.search_attributes import AGENT_TYPE, REPO, STAGE, TASK_ID
from factory.specs import run_workflow_id, task_workflow_id
from factory.store.tables import WorkflowStatus
from factory.tasks.ports import RepoChecker
from factory.tasks.service import TaskService
from temporal import schedules as sched
from workflows.step_interpreter import ConfiguredWorkflow
from workflows.task import TaskWorkflow


class TemporalEngine:
    """A `factory.tasks.ports.WorkflowEngine` on a Temporal client."""

    def __init__(self, cfg: FactoryConfig, client: Client):
        self.cfg = cfg
        self.client = client

    def task_workflow_id(self, task_id: int) -> str:
        return task_workflow_id(self.cfg, task_id)

    def run_workflow_id(self, run_id: int) -> str:
        return run_workflow_id(self.cfg, run_id)

    async def check_health(self) -> None:
        await self.client.service_client.check_health()

    async def start_task(self, inp: TaskInput, agent_type: str, again: bool = False) -> None:
        # a retry may follow a failed or cancelled run, never a completed one nor a running one
        reuse = WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY if again else WorkflowIDReusePolicy.REJECT_DUPLICATE
        try:
            await self.client.start_workflow(
                TaskWorkflow.run,
                inp,
                id=self.task_workflow_id(inp.task_id),
                task_queue=self.cfg.temporal.task_queue,
                id_reuse_policy=reuse,
                static_summary=inp.title[:200],
                static_details=f"{agent_type} on {inp.repo.name}",
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(TASK_ID, inp.task_id),
                        SearchAttributePair(REPO, inp.repo.name),
                        SearchAttributePair(AGENT_TYPE, agent_type),
                        SearchAttributePair(STAGE, "queued"),
                    ]
                ),
            )
        except WorkflowAlreadyStartedError as exc:
            raise AlreadyRunning(f"task {inp.task_id} is already running") from exc

    async def start_run(self, inp: WorkflowRunInput) -> None:
        await self.client.start_workflow(
            ConfiguredWorkflow.run,
            inp,
            id=self.run_workflow_id(inp.run_id),
            task_queue=self.cfg.temporal.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"{inp.name}: {inp.title}"[:200],
            static_details=f"workflow {inp.name} #{inp.run_id} on {inp.repo.name}, {len(inp.steps)} steps, "
            f"at most {inp.max_iterations} iterations",
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(REPO, inp.repo.name), SearchAttributePair(STAGE, WorkflowStatus.pending.value)]
            ),
        )

    async def answer(self, task_id: int, answer: AnswerInput) -> None:
        handle = self.client.get_workflow_handle_for(TaskWorkflow.run, self.task_workflow_id(task_id))
        try:
            await handle.execute_update(TaskWorkflow.answer, answer)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            raise AnswerRefused(cause.message if isinstance(cause, ApplicationError) else str(cause or exc)) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise AnswerRefused(f"task {task_id} is not running") from exc
            raise

    async def cancel(self, workflow_id: str) -> bool:
        try:
            await self.client.get_workflow_handle(workflow_id).cancel()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return False
        return True

    async def wait_closed(self, workflow_id: str, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.client.get_workflow_handle(workflow_id).result(), timeout)
        except TimeoutError:
            return False
        except Exception:  # a failed or cancelled run (or none at all) has closed all the same
            pass
        return True

    async def stage(self, task_id: int) -> str | None:
        try:
            desc = await self.client.get_workflow_handle(self.task_workflow_id(task_id)).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return desc.typed_search_attributes.get(STAGE)


class TemporalSchedules:
    """Temporal Schedules by name, for the schedules routes (which so never hold a Temporal client)."""

    def __init__(self, cfg: FactoryConfig, client: Client):
        self.cfg = cfg
        self.client = client

    async def list(self) -> list[Any]:
        return await sched.list_schedules(self.client, self.cfg)

    async def create(self, name: str, spec: ScheduleConfig) -> Any:
        try:
            await sched.create_schedule(self.client, self.cfg, name, spec)
        except RPCError as exc:
            if exc.status == RPCStatusCode.INVALID_ARGUMENT:
                raise LaunchError(f"Temporal refused the schedule: {exc.message}") from exc
            raise
        return await sched.describe_schedule(self.client, self.cfg, name)

    async def describe(self, name: str) -> Any:
        return await sched.describe_schedule(self.client, self.cfg, name)

    async def pause(self, name: str, paused: bool) -> None:
        await sched.pause_schedule(self.client, self.cfg, name, paused=paused)

    async def trigger(self, name: str) -> None:
        await sched.trigger_schedule(self.client, self.cfg, name)

    async def delete(self, name: str) -> None:
        await sched.delete_schedule(self.client, self.cfg, name)


class TemporalLauncher(TaskService):
    """The task service on Temporal, as the API, the worker and `factory up` build it."""

    def __init__(self, cfg: FactoryConfig, client: Client, engine: Engine, repos: RepoChecker | None = None):
        super().__init__(cfg, engine, TemporalEngine(cfg, client), repos, TemporalSchedules(cfg, client))
        self.client = client  # for the memory client the API makes; the routes go through the service
