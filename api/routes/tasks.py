"""Tasks: create, list, run, cancel, retry, answer, logs, questions, handoffs, the branch diff."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import bindparam
from sqlmodel import Session, or_, select

from api.bodies import MAX_ID, AnswerBody, TaskCreate
from api.deps import CfgDep, IdPath, LauncherDep, PrincipalDep, SessionDep, read_now, temporal_call
from api.errors import JSONRoute, responses
from api.schemas import AnswerAccepted, DiffPublic, HandoffPublic, LogPublic, QuestionPublic, TaskPublic, TaskStage
from factory.launcher import NewTask
from factory.store.tables import Handoff, Question, Task, TaskLog, TaskStatus
from factory.store.views import get_task, pending_question, require_task
from factory.tasks.diffs import task_diff as diff_of
from factory.tasks.diffs import worktree_owner

router = APIRouter(prefix="/api/tasks", tags=["tasks"], route_class=JSONRoute)


def _public(session: Session, task_id: int) -> TaskPublic:
    task = get_task(session, task_id)
    session.refresh(task)  # the launcher writes through its own session
    return TaskPublic.of(task, pending_question(session, task))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TaskPublic, responses=responses(413, 422, 503))
async def create_task(body: TaskCreate, launcher: LauncherDep, auto_run: bool = False) -> TaskPublic:
    """Create a task (and start it with `?auto_run=true`).

    When Temporal is down the start fails with a 503 that names the task: its row is kept as
    `queued` (nothing else was written), to be started with `POST /api/tasks/{id}/run`.
    """
    new = NewTask(
        title=body.title, description=body.description, repo=body.repo, agent_type=body.agent_type, backend=body.backend
    )
    task = await launcher.create_task(new, run=False)
    if auto_run:
        kept = f"; task {task.id} was kept as queued and not started: start it with POST /api/tasks/{task.id}/run"
        async with temporal_call(launcher, kept):
            await launcher.start_task(task)
    return TaskPublic.of(task, None)


def _tasks(session: Session, status_: TaskStatus | None, limit: int) -> list[TaskPublic]:
    q = select(Task)
    if status_:
        q = q.where(Task.status == status_)
    return [
        TaskPublic.of(t, pending_question(session, t)) for t in session.exec(q.order_by(Task.id.desc()).limit(limit))
    ]


def _task(session: Session, task_id: int) -> TaskPublic:
    task = get_task(session, task_id)
    return TaskPublic.of(task, pending_question(session, task))


# built once: building the statement took a fifth of a poll's CPU (py-spy, bench/LOAD.md)
_LOGS = (
    select(TaskLog)
    .where(TaskLog.task_id == bindparam("task_id"), TaskLog.id > bindparam("since"))
    .order_by(TaskLog.id)
    .limit(bindparam("limit"))
)


def _logs(session: Session, task_id: int, since: int, limit: int) -> list[LogPublic]:
    rows = session.exec(_LOGS, params={"task_id": task_id, "since": since, "limit": limit}).all()
    if not rows:  # a task's lines imply its row (tasks are never deleted); only an empty page looks it up
        require_task(session, task_id)
    return [LogPublic.model_validate(r) for r in rows]


# The three reads a dashboard or script polls run on the event loop for SQLite (`read_now`).


@router.get("", response_model=list[TaskPublic], responses=responses(422))
async def list_tasks(
    session: SessionDep,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TaskPublic]:
    """List tasks, newest first (`?status=`)."""
    return await read_now(session, _tasks, status_, limit)


@router.get("/{task_id}", response_model=TaskPublic, responses=responses(404, 422))
async def read_task(task_id: IdPath, session: SessionDep) -> TaskPublic:
    """One task."""
    return await read_now(session, _task, task_id)


@router.post(
    "/{task_id}/run", status_code=status.HTTP_202_ACCEPTED, response_model=TaskPublic,
    responses=responses(404, 409, 422, 503),
)  # fmt: skip
async def run_task(task_id: IdPath, session: SessionDep, launcher: LauncherDep) -> TaskPublic:
    """Start a queued task."""
    async with temporal_call(launcher):
        await launcher.run_task(task_id)
    return await run_in_threadpool(_public, session, task_id)


@router.post(
    "/{task_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=TaskPublic,
    responses=responses(404, 409, 422, 503),
)  # fmt: skip
async def cancel_task(task_id: IdPath, session: SessionDep, launcher: LauncherDep) -> TaskPublic:
    """Cancel a task: its agent is killed, its branch kept."""
    async with temporal_call(launcher):
        await launcher.cancel_task(task_id)
    return await run_in_threadpool(_public, session, task_id)


@router.post(
    "/{task_id}/retry", status_code=status.HTTP_202_ACCEPTED, response_model=TaskPublic,
    responses=responses(404, 409, 422, 503),
)  # fmt: skip
async def retry_task(task_id: IdPath, session: SessionDep, launcher: LauncherDep) -> TaskPublic:
    """Start a failed or cancelled task again from its pushed branch, resuming its agent's session (409 otherwise)."""
    async with temporal_call(launcher):
        await launcher.retry_task(task_id)
    return await run_in_threadpool(_public, session, task_id)


@router.get("/{task_id}/stage", response_model=TaskStage, responses=responses(404, 422, 503))
async def task_stage(task_id: IdPath, launcher: LauncherDep) -> TaskStage:
    """Where the task's workflow stands now (from Temporal): preparing, agent, awaiting_input, pushing, ..."""
    async with temporal_call(launcher):
        return TaskStage(stage=await launcher.task_stage(task_id))


@router.get("/{task_id}/diff", response_model=DiffPublic, responses=responses(404, 409, 422))
async def task_diff(task_id: IdPath, session: SessionDep, cfg: CfgDep) -> DiffPublic:
    """The task's diff: live from its worktree while its agent works (`live: true`), else the pushed branch's (409 before)."""
    task = await run_in_threadpool(get_task, session, task_id)
    owner = await run_in_threadpool(worktree_owner, session, task)
    return DiffPublic.model_validate(await diff_of(cfg, task, owner), from_attributes=True)


@router.post("/{task_id}/answer", response_model=AnswerAccepted, responses=responses(404, 409, 413, 422, 503))
async def answer_task(
    task_id: IdPath, body: AnswerBody, session: SessionDep, launcher: LauncherDep, principal: PrincipalDep
) -> AnswerAccepted:
    """Answer the task's pending question; the agent resumes its session (a signed-in person answers as their login)."""
    who = principal.actor if principal.user_id is not None else body.answered_by  # a person is who the API found
    async with temporal_call(launcher):
        await launcher.answer_task(task_id, body.answer, who, body.question_id)
    return AnswerAccepted(task=await run_in_threadpool(_public, session, task_id))


@router.get("/{task_id}/logs", response_model=list[LogPublic], responses=responses(404, 422))
async def task_logs(
    task_id: IdPath,
    session: SessionDep,
    since: Annotated[int, Query(ge=0, le=MAX_ID, description="return log entries with an id above this")] = 0,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> list[LogPublic]:
    """The task's log entries after the `since` cursor (a log id)."""
    return await read_now(session, _logs, task_id, since, limit)


@router.get("/{task_id}/questions", response_model=list[QuestionPublic], responses=responses(404, 422))
def task_questions(task_id: IdPath, session: SessionDep) -> list[QuestionPublic]:
    """Every question the task asked, with answers and who answered."""
    get_task(session, task_id)
    rows = session.exec(select(Question).where(Question.task_id == task_id).order_by(Question.id))
    return [QuestionPublic.model_validate(q) for q in rows]


@router.get("/{task_id}/handoffs", response_model=list[HandoffPublic], responses=responses(404, 422))
def task_handoffs(task_id: IdPath, session: SessionDep) -> list[HandoffPublic]:
    """Handoffs from or to this task."""
    get_task(session, task_id)
    rows = session.exec(
        select(Handoff).where(or_(Handoff.from_task_id == task_id, Handoff.to_task_id == task_id)).order_by(Handoff.id)
    )
    return [HandoffPublic.model_validate(h) for h in rows]
