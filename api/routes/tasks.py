"""Tasks: create, list, run, cancel, answer, logs, questions, handoffs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field, field_validator
from sqlmodel import Session, or_, select
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CfgDep, SessionDep, TemporalClientDep
from api.launch import (
    AlreadyRunning,
    AnswerRefused,
    LaunchError,
    agent_spec,
    deliver_answer,
    resolve_checked,
    start_task,
    task_workflow_id,
)
from factory.store.tables import FINISHED, Handoff, Question, Task, TaskLog, TaskStatus

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


class TaskCreate(BaseModel):
    title: str = Field(max_length=500)
    description: str = Field(default="", max_length=100_000)
    repo: str = Field(max_length=300)
    agent_type: str | None = None

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("title must not be empty")
        return v


class AnswerBody(BaseModel):
    answer: str = Field(max_length=50_000)
    question_id: int | None = None
    answered_by: str = Field(default="user", max_length=200)


def pending_question(session: Session, task_id: int) -> dict[str, Any] | None:
    q = session.exec(
        select(Question).where(Question.task_id == task_id, Question.status == "pending").order_by(Question.id.desc())
    ).first()
    if q is None:
        return None
    return {"id": q.id, "text": q.text, "options": q.options, "asked_at": _iso(q.asked_at)}


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def task_public(session: Session, task: Task) -> dict[str, Any]:
    data = task.model_dump()
    for k in ("created_at", "started_at", "finished_at"):
        data[k] = _iso(getattr(task, k))
    data["pending_question"] = pending_question(session, task.id) if task.status == TaskStatus.awaiting_input else None
    return data


def get_task_or_404(session: Session, task_id: int) -> Task:
    task = session.get(Task, task_id)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} not found")
    return task


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_task(
    body: TaskCreate, session: SessionDep, cfg: CfgDep, client: TemporalClientDep, auto_run: bool = False
) -> dict[str, Any]:
    """Create a task (and start it with `?auto_run=true`)."""
    try:
        ref = await resolve_checked(cfg, body.repo)
        agent_type = body.agent_type or (cfg.repos[ref.name].default_agent if ref.name in cfg.repos else "coder")
        agent_spec(cfg, agent_type)
    except LaunchError as exc:
        raise HTTPException(422, str(exc)) from exc
    task = Task(title=body.title, description=body.description, repo=ref.name, agent_type=agent_type)
    session.add(task)
    session.commit()
    session.refresh(task)
    if auto_run:
        await start_task(cfg, client, task, ref=ref)
    return task_public(session, task)


@router.get("")
def list_tasks(
    session: SessionDep,
    status_: str | None = Query(default=None, alias="status"),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """List tasks, newest first (`?status=`)."""
    q = select(Task)
    if status_:
        if status_ not in TaskStatus.__members__:
            raise HTTPException(422, f"unknown status {status_!r} (one of {', '.join(TaskStatus.__members__)})")
        q = q.where(Task.status == status_)
    return [task_public(session, t) for t in session.exec(q.order_by(Task.id.desc()).limit(limit))]


@router.get("/{task_id}")
def get_task(task_id: int, session: SessionDep) -> dict[str, Any]:
    """One task."""
    return task_public(session, get_task_or_404(session, task_id))


@router.post("/{task_id}/run", status_code=status.HTTP_202_ACCEPTED)
async def run_task(task_id: int, session: SessionDep, cfg: CfgDep, client: TemporalClientDep) -> dict[str, Any]:
    """Start a queued task."""
    task = get_task_or_404(session, task_id)
    if task.status != TaskStatus.queued:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task {task_id} is {task.status}, not queued")
    try:
        await start_task(cfg, client, task)
    except AlreadyRunning as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task {task_id} is already running") from exc
    except LaunchError as exc:
        raise HTTPException(422, str(exc)) from exc
    return task_public(session, task)


@router.post("/{task_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_task(task_id: int, session: SessionDep, cfg: CfgDep, client: TemporalClientDep) -> dict[str, Any]:
    """Cancel a task: its agent is killed, its branch kept."""
    task = get_task_or_404(session, task_id)
    if task.status in FINISHED:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task {task_id} is already {task.status}")
    try:
        await client.get_workflow_handle(task_workflow_id(cfg, task_id)).cancel()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        task.status = TaskStatus.cancelled  # never started: nothing runs, just record it
        session.add(task)
        session.commit()
    return task_public(session, task)


@router.post("/{task_id}/answer")
async def answer_task(
    task_id: int, body: AnswerBody, session: SessionDep, cfg: CfgDep, client: TemporalClientDep
) -> dict[str, Any]:
    """Answer the task's pending question; the agent resumes its session."""
    task = get_task_or_404(session, task_id)
    if not body.answer.strip():
        raise HTTPException(422, "answer must not be empty")
    if task.status in FINISHED:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task {task_id} is {task.status}; it asks nothing")
    try:
        await deliver_answer(cfg, client, task_id, body.answer, body.answered_by, body.question_id)
    except AnswerRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    session.refresh(task)
    return {"status": "accepted", "task": task_public(session, task)}


@router.get("/{task_id}/logs")
def task_logs(
    task_id: int,
    session: SessionDep,
    since: int = Query(default=0, ge=0, description="return log entries with an id above this"),
    limit: int = Query(default=200, ge=1, le=2000),
) -> list[dict[str, Any]]:
    """The task's log entries after the `since` cursor (a log id)."""
    get_task_or_404(session, task_id)
    rows = session.exec(
        select(TaskLog).where(TaskLog.task_id == task_id, TaskLog.id > since).order_by(TaskLog.id).limit(limit)
    )
    return [{**r.model_dump(exclude={"created_at"}), "created_at": _iso(r.created_at)} for r in rows]


@router.get("/{task_id}/questions")
def task_questions(task_id: int, session: SessionDep) -> list[dict[str, Any]]:
    """Every question the task asked, with answers and who answered."""
    get_task_or_404(session, task_id)
    rows = session.exec(select(Question).where(Question.task_id == task_id).order_by(Question.id))
    return [
        {**q.model_dump(exclude={"asked_at", "answered_at"}), "asked_at": _iso(q.asked_at), "answered_at": _iso(q.answered_at)}
        for q in rows
    ]


@router.get("/{task_id}/handoffs")
def task_handoffs(task_id: int, session: SessionDep) -> list[dict[str, Any]]:
    """Handoffs from or to this task."""
    get_task_or_404(session, task_id)
    rows = session.exec(
        select(Handoff).where(or_(Handoff.from_task_id == task_id, Handoff.to_task_id == task_id)).order_by(Handoff.id)
    )
    return [{**h.model_dump(exclude={"created_at"}), "created_at": _iso(h.created_at)} for h in rows]
