"""Creating tasks and starting their workflows: shared by the REST API, webhooks and handoffs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from factory.config import FactoryConfig
from factory.contracts import AgentSpec, AnswerInput, RepoRef, TaskInput
from factory.git.repos import RepoError, check_reachable, resolve_repo
from factory.search_attributes import AGENT_TYPE, REPO, STAGE, TASK_ID
from factory.store.tables import Task, session_scope
from workflows.task import TaskWorkflow


class LaunchError(ValueError):
    """Bad input for a task: the message says what (-> 4xx)."""


class AlreadyRunning(Exception):
    pass


def task_workflow_id(cfg: FactoryConfig, task_id: int) -> str:
    return f"{cfg.temporal.id_prefix}task-{task_id}"


def agent_spec(cfg: FactoryConfig, agent_type: str) -> AgentSpec:
    tpl = cfg.agent_templates.get(agent_type)
    if tpl is None:
        known = ", ".join(sorted(cfg.agent_templates))
        raise LaunchError(f"unknown agent_type {agent_type!r} (configured: {known})")
    total = cfg.agent_timeout_minutes
    if tpl.timeout_minutes:
        total = min(total, tpl.timeout_minutes)
    return AgentSpec(
        agent_type=agent_type,
        system_prompt_file=str(cfg.prompt_path(tpl.system_prompt_file)),
        tools=list(tpl.allowed_tools),
        total_timeout_s=total * 60,
        idle_timeout_s=cfg.agent_activity_timeout_minutes * 60,
        model=tpl.model,
        max_turns=tpl.max_turns,
        extra_args=list(tpl.extra_args),
    )


async def resolve_checked(cfg: FactoryConfig, repo: str) -> RepoRef:
    """Resolve a repo name and `git ls-remote` it when it is not configured."""
    try:
        ref = resolve_repo(cfg, repo)
        await asyncio.to_thread(check_reachable, cfg, ref)
    except RepoError as exc:
        raise LaunchError(str(exc)) from exc
    return ref


def default_agent(cfg: FactoryConfig, repo: str) -> str:
    rc = cfg.repos.get(repo)
    return rc.default_agent if rc else "coder"


@dataclass
class TaskStart:
    branch: str | None = None
    context: str = ""
    parent_task_id: int | None = None


def task_input(cfg: FactoryConfig, task: Task, ref: RepoRef, start: TaskStart | None = None) -> TaskInput:
    start = start or TaskStart()
    return TaskInput(
        task_id=task.id,
        title=task.title,
        description=task.description,
        repo=ref,
        agent=agent_spec(cfg, task.agent_type),
        heartbeat_timeout_s=cfg.temporal.heartbeat_timeout_seconds,
        clarification_timeout_s=cfg.clarification_timeout_hours * 3600,
        branch=start.branch,
        context=start.context,
        memory=cfg.memory.enabled,
    )


async def start_task(
    cfg: FactoryConfig, client: Client, task: Task, start: TaskStart | None = None, ref: RepoRef | None = None
) -> WorkflowHandle:
    """Start the task's TaskWorkflow (id `task-<id>`); AlreadyRunning if it was started before."""
    ref = ref or await resolve_checked(cfg, task.repo)
    inp = task_input(cfg, task, ref, start)
    try:
        return await client.start_workflow(
            TaskWorkflow.run,
            inp,
            id=task_workflow_id(cfg, task.id),
            task_queue=cfg.temporal.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=task.title[:200],
            static_details=f"{task.agent_type} on {ref.name}",
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(TASK_ID, task.id),
                    SearchAttributePair(REPO, ref.name),
                    SearchAttributePair(AGENT_TYPE, task.agent_type),
                    SearchAttributePair(STAGE, "queued"),
                ]
            ),
        )
    except WorkflowAlreadyStartedError as exc:
        raise AlreadyRunning(f"task {task.id} was already started") from exc


class AnswerRefused(Exception):
    """The task cannot take this answer now (-> 409); the message says why."""


async def deliver_answer(
    cfg: FactoryConfig, client: Client, task_id: int, answer: str, answered_by: str = "user", question_id: int | None = None
) -> None:
    """Send an answer to the task's workflow as an Update (validated there: no stale or duplicate answers)."""
    handle = client.get_workflow_handle(task_workflow_id(cfg, task_id))
    try:
        await handle.execute_update(
            TaskWorkflow.answer, AnswerInput(answer=answer, question_id=question_id, answered_by=answered_by)
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise AnswerRefused(cause.message if isinstance(cause, ApplicationError) else str(cause or exc)) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise AnswerRefused(f"task {task_id} is not running") from exc
        raise


def create_task_row(engine: Engine, **fields: object) -> Task:
    with session_scope(engine) as s:
        task = Task(**fields)
        s.add(task)
        s.commit()
        s.refresh(task)
        return task
