"""The launcher port's Temporal side: typed workflow handles, search attributes, id reuse rules.

Row writes run in a thread (`asyncio.to_thread`), so a SQLite lock wait never holds up the
event loop the API and the worker share under `factory up`.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from factory.config import FactoryConfig
from factory.contracts import AnswerInput, RepoRef
from factory.domain.text import clip
from factory.git.commands import git
from factory.git.repos import git_env
from factory.launcher import (
    AlreadyRunning,
    AnswerRefused,
    Cancelled,
    Conflict,
    LaunchError,
    NewTask,
    NotFound,
    TaskStart,
)
from factory.search_attributes import AGENT_TYPE, REPO, STAGE, TASK_ID
from factory.specs import (
    agent_spec,
    default_agent,
    resolve_checked,
    run_workflow_id,
    task_input,
    task_workflow_id,
    workflow_definition,
    workflow_input,
)
from factory.store.tables import FINISHED, Task, TaskStatus, WorkflowRun, WorkflowStatus, session_scope, utcnow
from factory.store.writes import insert
from workflows.step_interpreter import ConfiguredWorkflow
from workflows.task import TaskWorkflow

RUN_ACTIVE = (WorkflowStatus.pending, WorkflowStatus.running)
RETRY_WIND_DOWN_S = 30
"""How long a retry waits for the last run's cleanup (it pushes what the agent left) before a 409."""


class TemporalLauncher:
    """A `factory.launcher.Launcher` that starts and talks to Factory's workflows through a Temporal client."""

    def __init__(self, cfg: FactoryConfig, client: Client, engine: Engine):
        self.cfg = cfg
        self.client = client
        self.engine = engine

    def task_workflow_id(self, task_id: int) -> str:
        """The workflow id of a task's TaskWorkflow."""
        return task_workflow_id(self.cfg, task_id)

    def run_workflow_id(self, run_id: int) -> str:
        """The workflow id of a configured workflow run."""
        return run_workflow_id(self.cfg, run_id)

    async def check_health(self) -> None:
        """Raise when the Temporal frontend does not answer."""
        await self.client.service_client.check_health()

    async def create_task(self, new: NewTask, start: TaskStart | None = None, run: bool = True) -> Task:
        """Validate, create the task row and (with `run`) start its workflow."""
        ref = await resolve_checked(self.cfg, new.repo)
        agent_type = new.agent_type or default_agent(self.cfg, ref.name)
        agent_spec(self.cfg, agent_type)
        fields = {k: v for k, v in vars(new).items() if k not in ("repo", "agent_type")}
        task = await asyncio.to_thread(insert, self.engine, Task(**fields, repo=ref.name, agent_type=agent_type))
        if run:
            await self._start(task, start, ref)
        return task

    async def start_task(self, task: Task, start: TaskStart | None = None) -> None:
        """Start the workflow of an existing queued task row."""
        await self._start(task, start, None)

    async def task_stage(self, task_id: int) -> str | None:
        """The Stage search attribute of the task's workflow (no worker needed to answer)."""
        try:
            desc = await self.client.get_workflow_handle(self.task_workflow_id(task_id)).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return desc.typed_search_attributes.get(STAGE)

    async def retry_task(self, task_id: int) -> Task:
        """Start a failed or cancelled task again: a new run of its TaskWorkflow on its pushed branch.

        The last run is given up to `RETRY_WIND_DOWN_S` to finish its cleanup (which pushes the work
        it left); the new run resumes the agent's CLI session when one was saved.
        """
        task = await asyncio.to_thread(_get_task, self.engine, task_id)
        if task.status not in (TaskStatus.failed, TaskStatus.cancelled):
            raise Conflict(f"task {task_id} is {task.status}; only a failed or cancelled task can be retried")
        if task.workflow_run_id is not None:
            raise Conflict(f"task {task_id} is a step of workflow run {task.workflow_run_id}; start a new run instead")
        ref = await resolve_checked(self.cfg, task.repo)
        agent_spec(self.cfg, task.agent_type)
        handle = self.client.get_workflow_handle(self.task_workflow_id(task_id))
        try:
            await asyncio.wait_for(handle.result(), RETRY_WIND_DOWN_S)
        except TimeoutError as exc:
            raise Conflict(f"task {task_id}'s last run is still winding down; retry in a moment") from exc
        except Exception:  # a failed or cancelled run (or none at all) is what a retry follows
            pass
        branch = task.branch if task.branch and await _on_remote(self.cfg, ref, task.branch) else None
        why = f"was {task.status}" + (f": {clip(task.error, 500)}" if task.error else "")
        context = (
            f"## This is a retry\nThe previous attempt at this task {why}.\n"
            + ("Its work so far is on this branch, checked out for you: " if branch else "Nothing was pushed; ")
            + "check the working tree and `git log`, then finish the task."
        )
        start = TaskStart(branch=branch, context=context, resume_session=task.session_id)
        previous = await asyncio.to_thread(_reopen, self.engine, task_id)
        try:
            await self._start(previous, start, ref, WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
        except BaseException:
            await asyncio.to_thread(_restore, self.engine, task)
            raise
        return await asyncio.to_thread(_get_task, self.engine, task_id)

    async def _start(
        self,
        task: Task,
        start: TaskStart | None,
        ref: RepoRef | None,
        reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE,
    ) -> None:
        ref = ref or await resolve_checked(self.cfg, task.repo)
        inp = task_input(self.cfg, task, ref, start)
        try:
            await self.client.start_workflow(
                TaskWorkflow.run,
                inp,
                id=self.task_workflow_id(task.id),
                task_queue=self.cfg.temporal.task_queue,
                id_reuse_policy=reuse,
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
            raise AlreadyRunning(f"task {task.id} is already running") from exc

    async def start_workflow_run(
        self, name: str, title: str, description: str, repo: str, plane_issue_id: str | None = None
    ) -> WorkflowRun:
        """Create the WorkflowRun row (pending) and start its ConfiguredWorkflow; a failed start marks it failed."""
        wf = workflow_definition(self.cfg, name)
        title = title.strip()
        if not title:
            raise LaunchError("title must not be empty")
        ref = await resolve_checked(self.cfg, repo)
        row = WorkflowRun(name=name, title=title, description=description, repo=ref.name, plane_issue_id=plane_issue_id)
        run = await asyncio.to_thread(insert, self.engine, row)
        try:
            await self.client.start_workflow(
                ConfiguredWorkflow.run,
                workflow_input(self.cfg, run, wf, ref),
                id=self.run_workflow_id(run.id),
                task_queue=self.cfg.temporal.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"{name}: {title}"[:200],
                static_details=f"workflow {name} #{run.id} on {ref.name}, {len(wf.steps)} steps, "
                f"at most {wf.max_iterations} iterations",
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(REPO, ref.name), SearchAttributePair(STAGE, WorkflowStatus.pending.value)]
                ),
            )
        except Exception as exc:
            await asyncio.to_thread(_mark_run_failed, self.engine, run.id, f"could not start: {exc}")
            raise
        return run

    async def deliver_answer(
        self, task_id: int, answer: str, answered_by: str = "user", question_id: int | None = None
    ) -> None:
        """Send the answer as the TaskWorkflow's `answer` Update (its validator refuses stale or duplicate answers)."""
        handle = self.client.get_workflow_handle_for(TaskWorkflow.run, self.task_workflow_id(task_id))
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

    async def cancel_task(self, task_id: int) -> Cancelled:
        """Cancel the task's workflow (its agent is killed, its branch kept), or record a never-started one."""
        return await self._cancel(self.task_workflow_id(task_id), Task, task_id)

    async def cancel_run(self, run_id: int) -> Cancelled:
        """Cancel a workflow run (its running step goes with it), or record a never-started one."""
        return await self._cancel(self.run_workflow_id(run_id), WorkflowRun, run_id)

    async def _cancel(self, workflow_id: str, table: type[Task] | type[WorkflowRun], row_id: int) -> Cancelled:
        try:
            await self.client.get_workflow_handle(workflow_id).cancel()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # never started: nothing runs, so the row only needs to say so
            await asyncio.to_thread(_mark_cancelled, self.engine, table, row_id)
            return Cancelled(signalled=False)
        return Cancelled(signalled=True)



def _mark_cancelled(engine: Engine, table: type[Task] | type[WorkflowRun], row_id: int) -> None:
    with session_scope(engine) as s:
        row = s.get(table, row_id)
        if row is None:
            return
        if isinstance(row, Task):
            if row.status in FINISHED:
                return
            row.status = TaskStatus.cancelled
        else:
            if row.status not in RUN_ACTIVE:
                return
            row.status = WorkflowStatus.cancelled
            row.finished_at = utcnow()
        s.add(row)
        s.commit()


def _mark_run_failed(engine: Engine, run_id: int, error: str) -> None:
    with session_scope(engine) as s:
        row = s.get(WorkflowRun, run_id)
        if row is not None:
            row.status = WorkflowStatus.failed
            row.error = clip(error, 2000)
            row.finished_at = utcnow()
            s.add(row)
            s.commit()


def _get_task(engine: Engine, task_id: int) -> Task:
    with session_scope(engine) as s:
        task = s.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


def _reopen(engine: Engine, task_id: int) -> Task:
    """Put a failed or cancelled task back to queued, in one conditional UPDATE: of two retries at once, one wins."""
    with engine.begin() as conn:
        done = conn.execute(
            update(Task)
            .where(col(Task.id) == task_id, col(Task.status).in_([TaskStatus.failed, TaskStatus.cancelled]))
            .values(status=TaskStatus.queued, error=None, finished_at=None)
        )
    if done.rowcount != 1:
        raise Conflict(f"task {task_id} is already being retried")
    return _get_task(engine, task_id)


def _restore(engine: Engine, before: Task) -> None:
    """Undo `_reopen` when the new run could not start."""
    with session_scope(engine) as s:
        task = s.get(Task, before.id)
        if task is not None and task.status == TaskStatus.queued:
            task.status, task.error, task.finished_at = before.status, before.error, before.finished_at
            s.add(task)
            s.commit()


async def _on_remote(cfg: FactoryConfig, ref: RepoRef, branch: str) -> bool:
    """Whether the remote has `branch` (a task that failed before its first push has none)."""
    out = await git(
        "ls-remote", "--heads", "--end-of-options", ref.url, f"refs/heads/{branch}", env=git_env(cfg, ref.url),
        git_dir=None, timeout=60,
    )  # fmt: skip
    return bool(out.strip())
