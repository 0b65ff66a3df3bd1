"""The task service: the lifecycle of tasks and workflow runs, and the rules of which state allows what.

It implements the launcher port (`factory.launcher.Launcher`) that the API, the inbound handlers,
schedules and handoffs call, and sits on a `WorkflowEngine` (Temporal's adapter lives in
`temporal/launcher.py`) and a `RepoChecker` (`git ls-remote`). Apart from the activities' progress
updates, every change of a task's status goes through here (`rows.py`).

The state rules (each a 409 `Conflict` at the API):
- run: only a queued task;  cancel: not a finished task or run;  answer: not a finished task;
- retry: only a failed or cancelled task that is not a step of a run, once its last run has closed;
- hand off: only a finished task that has a branch.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import Engine

from factory.config import FactoryConfig
from factory.contracts import AnswerInput, RepoRef
from factory.domain.handoffs import handoff_section
from factory.domain.lifecycle import AnswerRefused, Cancelled, Conflict, LaunchError, NewTask, TaskStart
from factory.domain.text import clip
from factory.specs import agent_spec, default_agent, task_input, workflow_definition, workflow_input
from factory.store.tables import FINISHED, RUN_FINISHED, Handoff, Task, TaskStatus, WorkflowRun
from factory.store.writes import insert
from factory.tasks import rows
from factory.tasks.ports import GitRepoChecker, RepoChecker, ScheduleBook, WorkflowEngine

ANSWER_WINDOW_S = 10.0

RETRY_WIND_DOWN_S = 30
"""How long a retry waits for the last run's cleanup (it pushes what the agent left) before a 409."""


class TaskService:
    """A `factory.launcher.Launcher`: the one place that decides what may happen to a task next."""

    def __init__(
        self,
        cfg: FactoryConfig,
        engine: Engine,
        workflows: WorkflowEngine,
        repos: RepoChecker | None = None,
        schedules: ScheduleBook | None = None,
    ):
        self.cfg = cfg
        self.engine = engine
        self.workflows = workflows
        self.repos = repos or GitRepoChecker(cfg)
        self.schedules = schedules  # None: schedules cannot be reached (the routes answer 503)

    def task_workflow_id(self, task_id: int) -> str:
        return self.workflows.task_workflow_id(task_id)

    def run_workflow_id(self, run_id: int) -> str:
        return self.workflows.run_workflow_id(run_id)

    async def check_health(self) -> None:
        await self.workflows.check_health()

    async def create_task(self, new: NewTask, start: TaskStart | None = None, run: bool = True) -> Task:
        """Validate (repo, agent type), create the task row, and with `run` start its workflow."""
        ref = await self.repos.resolve(new.repo)
        agent_type = new.agent_type or default_agent(self.cfg, ref.name)
        agent_spec(self.cfg, agent_type)
        fields = {k: v for k, v in vars(new).items() if k not in ("repo", "agent_type")}
        task = await asyncio.to_thread(insert, self.engine, Task(**fields, repo=ref.name, agent_type=agent_type))
        if run:
            await self._start(task, start, ref)
        return task

    async def start_task(self, task: Task, start: TaskStart | None = None) -> None:
        """Start the workflow of an existing queued task row (AlreadyRunning when it was started before)."""
        await self._start(task, start, None)

    async def run_task(self, task_id: int) -> Task:
        """Start a queued task by id."""
        task = await asyncio.to_thread(rows.get_task, self.engine, task_id)
        if task.status != TaskStatus.queued:
            raise Conflict(f"task {task_id} is {task.status}, not queued")
        await self._start(task, None, None)
        return task

    async def task_stage(self, task_id: int) -> str | None:
        """The stage of a task that exists (NotFound otherwise), as its workflow reports it."""
        await asyncio.to_thread(rows.get_task, self.engine, task_id)
        return await self.workflows.stage(task_id)

    async def retry_task(self, task_id: int) -> Task:
        """Start a failed or cancelled task again: a new run of its workflow on its pushed branch.

        The last run is given up to `RETRY_WIND_DOWN_S` to finish its cleanup (which pushes the work
        it left); the new run resumes the agent's CLI session when one was saved.
        """
        task = await asyncio.to_thread(rows.get_task, self.engine, task_id)
        if task.status not in rows.RETRYABLE:
            raise Conflict(f"task {task_id} is {task.status}; only a failed or cancelled task can be retried")
        if task.workflow_run_id is not None:
            raise Conflict(f"task {task_id} is a step of workflow run {task.workflow_run_id}; start a new run instead")
        ref = await self.repos.resolve(task.repo)
        agent_spec(self.cfg, task.agent_type)
        if not await self.workflows.wait_closed(self.task_workflow_id(task_id), RETRY_WIND_DOWN_S):
            raise Conflict(f"task {task_id}'s last run is still winding down; retry in a moment")
        branch = task.branch if task.branch and await self.repos.has_branch(ref, task.branch) else None
        why = f"was {task.status}" + (f": {clip(task.error, 500)}" if task.error else "")
        context = (
            f"## This is a retry\nThe previous attempt at this task {why}.\n"
            + ("Its work so far is on this branch, checked out for you: " if branch else "Nothing was pushed; ")
            + "check the working tree and `git log`, then finish the task."
        )
        start = TaskStart(branch=branch, context=context, resume_session=task.session_id)
        reopened = await asyncio.to_thread(rows.reopen, self.engine, task_id)
        try:
            await self._start(reopened, start, ref, again=True)
        except BaseException:
            await asyncio.to_thread(rows.restore, self.engine, task)
            raise
        return await asyncio.to_thread(rows.get_task, self.engine, task_id)

    async def _start(self, task: Task, start: TaskStart | None, ref: RepoRef | None, again: bool = False) -> None:
        ref = ref or await self.repos.resolve(task.repo)
        await self.workflows.start_task(task_input(self.cfg, task, ref, start), task.agent_type, again)

    async def start_workflow_run(
        self, name: str, title: str, description: str, repo: str, plane_issue_id: str | None = None
    ) -> WorkflowRun:
        """Create the run's row (pending) and start its workflow; a failed start marks the row failed."""
        wf = workflow_definition(self.cfg, name)
        title = title.strip()
        if not title:
            raise LaunchError("title must not be empty")
        ref = await self.repos.resolve(repo)
        row = WorkflowRun(name=name, title=title, description=description, repo=ref.name, plane_issue_id=plane_issue_id)
        run = await asyncio.to_thread(insert, self.engine, row)
        try:
            await self.workflows.start_run(workflow_input(self.cfg, run, wf, ref))
        except Exception as exc:
            await asyncio.to_thread(rows.mark_run_failed, self.engine, run.id, f"could not start: {exc}")
            raise
        return run

    async def deliver_answer(
        self, task_id: int, answer: str, answered_by: str = "user", question_id: int | None = None
    ) -> None:
        """Hand the answer to the task's workflow, whose validator refuses a stale or duplicate one.

        The question's row (and `awaiting_input`) is written by an activity one workflow task before the
        workflow itself waits on it: an answer in that window is refused as "no pending question" while
        the row says one is pending, so it is offered again for up to ANSWER_WINDOW_S, only while the row
        says so.
        """
        ans = AnswerInput(answer=answer, question_id=question_id, answered_by=answered_by)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANSWER_WINDOW_S
        delay = 0.1
        while True:
            try:
                return await self.workflows.answer(task_id, ans)
            except AnswerRefused as exc:
                if "no pending question" not in str(exc) or loop.time() + delay > deadline:
                    raise
                if not await asyncio.to_thread(rows.question_pending, self.engine, task_id):
                    raise
            await asyncio.sleep(delay)  # a bounded wait for the workflow's next task, not a race hidden
            delay = min(delay * 2, 1.0)

    async def answer_task(
        self, task_id: int, answer: str, answered_by: str = "user", question_id: int | None = None
    ) -> None:
        """`deliver_answer` to a task that exists and is not finished; an empty answer is refused."""
        task = await asyncio.to_thread(rows.get_task, self.engine, task_id)
        if not answer.strip():
            raise LaunchError("answer must not be empty")
        if task.status in FINISHED:
            raise Conflict(f"task {task_id} is {task.status}; it asks nothing")
        await self.deliver_answer(task_id, answer, answered_by, question_id)

    async def cancel_task(self, task_id: int) -> Cancelled:
        """Cancel the task's workflow (its agent is killed, its branch kept), or record a never-started one."""
        task = await asyncio.to_thread(rows.get_task, self.engine, task_id)
        if task.status in FINISHED:
            raise Conflict(f"task {task_id} is already {task.status}")
        if await self.workflows.cancel(self.task_workflow_id(task_id)):
            return Cancelled(signalled=True)
        await asyncio.to_thread(rows.mark_task_cancelled, self.engine, task_id)  # nothing runs: the row says so
        return Cancelled(signalled=False)

    async def cancel_run(self, run_id: int) -> Cancelled:
        """Cancel a workflow run (its running step goes with it), or record a never-started one."""
        run = await asyncio.to_thread(rows.get_run, self.engine, run_id)
        if run.status in RUN_FINISHED:
            raise Conflict(f"workflow {run_id} is already {run.status}")
        if await self.workflows.cancel(self.run_workflow_id(run_id)):
            return Cancelled(signalled=True)
        await asyncio.to_thread(rows.mark_run_cancelled, self.engine, run_id)
        return Cancelled(signalled=False)

    async def hand_off(
        self, from_task_id: int, to_agent: str, context: str = "", title: str | None = None
    ) -> tuple[Handoff, Task]:
        """Pass a finished task's work to another agent type: a new task on the same branch, told what was done."""
        src = await asyncio.to_thread(rows.get_task, self.engine, from_task_id)
        if src.status not in FINISHED:
            raise Conflict(f"task {src.id} is {src.status}; hand off a finished task")
        if not src.branch:
            raise Conflict(f"task {src.id} has no branch to hand on")
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
        task = await self.create_task(
            new, TaskStart(branch=src.branch, context="\n\n".join(parts), parent_task_id=src.id)
        )
        handoff = Handoff(
            from_task_id=src.id, to_task_id=task.id, from_agent=src.agent_type, to_agent=to_agent,
            summary=src.result or "", changed_files=src.changed_files, diff_stat=None,
        )  # fmt: skip
        return await asyncio.to_thread(insert, self.engine, handoff), task
