"""The launcher port: the one way to start tasks and workflow runs, answer, cancel and name workflows.

The REST API, the Plane, Telegram and GitHub inbound handlers and handoffs all go through a
`Launcher`; its Temporal implementation lives in `temporal/launcher.py`, so nothing below the
API reaches up to start a workflow. The exceptions say what went wrong in a way the API turns
into a status code: `LaunchError` -> 422, `NotFound` -> 404, `Conflict` (and its kinds) -> 409.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.engine import Engine

from factory.domain.handoffs import handoff_section
from factory.store.tables import FINISHED, Handoff, Task, WorkflowRun, session_scope
from factory.store.writes import insert


class LaunchError(ValueError):
    """Bad input for a task or a run (unknown repo, agent type or workflow): the message says what (-> 422)."""


class NotFound(LookupError):
    """The task, run or message named does not exist (-> 404)."""


class Conflict(Exception):
    """The request does not fit the current state of a task or run (-> 409); the message says why."""


class AlreadyRunning(Conflict):
    """The task's workflow was started before."""


class AnswerRefused(Conflict):
    """The task cannot take this answer now (not waiting, a stale or duplicate answer)."""


@dataclass
class NewTask:
    """A task row to create: what the API, an inbound event or a handoff asks for."""

    title: str
    repo: str
    description: str = ""
    agent_type: str | None = None  # None: the repo's default agent
    parent_task_id: int | None = None
    plane_issue_id: str | None = None
    branch: str | None = None  # a handoff or revision continues an existing branch
    pr_url: str | None = None
    pr_number: int | None = None
    pr_state: str | None = None


@dataclass
class TaskStart:
    """How a task's workflow starts: on an existing branch, with extra prompt context, from a parent."""

    branch: str | None = None
    context: str = ""
    parent_task_id: int | None = None
    resume_session: str | None = None  # a retry resumes the agent's CLI session where it was saved


@dataclass
class Cancelled:
    """What a cancel did: `signalled` when a workflow was asked to stop, else the row was marked cancelled."""

    signalled: bool


class Launcher(Protocol):
    """Starts, answers and cancels Factory's workflows; the port between the core and the engine."""

    def task_workflow_id(self, task_id: int) -> str:
        """The workflow id of a task's TaskWorkflow."""
        ...

    def run_workflow_id(self, run_id: int) -> str:
        """The workflow id of a configured workflow run."""
        ...

    async def check_health(self) -> None:
        """Raise when the workflow engine cannot be reached."""
        ...

    async def create_task(self, new: NewTask, start: TaskStart | None = None, run: bool = True) -> Task:
        """Validate, create the task row and (with `run`) start its workflow.

        Raises:
            LaunchError: an unknown or unreachable repo, or an unknown agent type; no row is made.
        """
        ...

    async def start_task(self, task: Task, start: TaskStart | None = None) -> None:
        """Start the workflow of a task row that exists and is queued.

        Raises:
            AlreadyRunning: it was started before.
            LaunchError: its repo or agent type is no longer valid.
        """
        ...

    async def task_stage(self, task_id: int) -> str | None:
        """Where the task's workflow stands (preparing, agent, awaiting_input, pushing, ...); None before it starts."""
        ...

    async def retry_task(self, task_id: int) -> Task:
        """Start a failed or cancelled task again from its pushed branch, resuming its agent's session.

        Raises:
            NotFound: no such task.
            Conflict: the task is not failed or cancelled, or its last run has not wound down yet.
            LaunchError: its repo or agent type is no longer valid.
        """
        ...

    async def start_workflow_run(
        self, name: str, title: str, description: str, repo: str, plane_issue_id: str | None = None
    ) -> WorkflowRun:
        """Create a configured workflow run's row and start it.

        Raises:
            LaunchError: an unknown workflow, repo or agent type, or an empty title.
        """
        ...

    async def deliver_answer(
        self, task_id: int, answer: str, answered_by: str = "user", question_id: int | None = None
    ) -> None:
        """Hand an answer to the task's waiting workflow (validated there).

        Raises:
            AnswerRefused: the task is not running, or the answer is stale or a duplicate.
        """
        ...

    async def cancel_task(self, task_id: int) -> Cancelled:
        """Cancel the task's workflow, or mark the row cancelled when it never started."""
        ...

    async def cancel_run(self, run_id: int) -> Cancelled:
        """Cancel a workflow run, or mark its row cancelled when it never started."""
        ...


async def hand_off(
    launcher: Launcher, engine: Engine, from_task_id: int, to_agent: str, context: str = "", title: str | None = None
) -> tuple[Handoff, Task]:
    """Pass a finished task's work to another agent type: a new task on the same branch, told what was done.

    Raises:
        NotFound: no task `from_task_id`.
        Conflict: that task is not finished, or has no branch to continue.
        LaunchError: `to_agent` is unknown, or the repo is no longer valid.
    """
    src = await asyncio.to_thread(_finished_task, engine, from_task_id)
    parts = [
        handoff_section(
            f"Handoff from {src.agent_type} (task #{src.id})", src.result or "", None, None, src.changed_files
        )
    ]
    if context.strip():
        parts.append("## What to do next\n" + context.strip())
    new = NewTask(
        title=title or f"{src.title} [{to_agent}, handoff from task #{src.id}]",
        description=src.description,
        repo=src.repo,
        agent_type=to_agent,
        parent_task_id=src.id,
        branch=src.branch,
    )
    task = await launcher.create_task(
        new, TaskStart(branch=src.branch, context="\n\n".join(parts), parent_task_id=src.id)
    )
    handoff = Handoff(
        from_task_id=src.id, to_task_id=task.id, from_agent=src.agent_type, to_agent=to_agent,
        summary=src.result or "", changed_files=src.changed_files, diff_stat=None,
    )  # fmt: skip
    return await asyncio.to_thread(insert, engine, handoff), task


def _finished_task(engine: Engine, task_id: int) -> Task:
    with session_scope(engine) as s:
        src = s.get(Task, task_id)
    if src is None:
        raise NotFound(f"task {task_id} not found")
    if src.status not in FINISHED:
        raise Conflict(f"task {src.id} is {src.status}; hand off a finished task")
    if not src.branch:
        raise Conflict(f"task {src.id} has no branch to hand on")
    return src

