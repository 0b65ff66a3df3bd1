"""Workflows: start a configured workflow (or the code-review loop), list, inspect, cancel, handoffs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlmodel import Session, select
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CfgDep, EngineDep, SessionDep, TemporalClientDep
from api.launch import LaunchError
from api.routes.tasks import pending_question
from api.workflow_launch import start_workflow_run, workflow_definitions, workflow_id
from factory.store.tables import Handoff, Task, TaskStatus, WorkflowRun, WorkflowStatus, utcnow

router = APIRouter(prefix="/api/workflows", tags=["workflows"])

_FINISHED = {WorkflowStatus.completed, WorkflowStatus.failed, WorkflowStatus.cancelled}


class CodeReviewCreate(BaseModel):
    title: str = Field(max_length=500)
    description: str = Field(default="", max_length=100_000)
    repo: str = Field(max_length=300)


class WorkflowCreate(CodeReviewCreate):
    name: str = Field(max_length=200)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def handoff_public(h: Handoff) -> dict[str, Any]:
    return {**h.model_dump(exclude={"created_at"}), "created_at": _iso(h.created_at)}


def run_public(session: Session, cfg: Any, run: WorkflowRun, detail: bool = True) -> dict[str, Any]:
    data = run.model_dump()
    for k in ("created_at", "started_at", "finished_at"):
        data[k] = _iso(getattr(run, k))
    data["workflow_id"] = workflow_id(cfg, run.id)
    if not detail:
        return data
    tasks = list(session.exec(select(Task).where(Task.workflow_run_id == run.id).order_by(Task.id)))
    handoffs = {h.from_task_id: h for h in session.exec(select(Handoff).where(Handoff.workflow_run_id == run.id))}
    steps = []
    question = None
    for t in tasks:
        h = handoffs.get(t.id)
        steps.append(
            {
                "step": t.workflow_step, "iteration": t.iteration, "agent_type": t.agent_type, "task_id": t.id,
                "status": t.status, "output_key": h.output_key if h else None, "handoff_id": h.id if h else None,
                "verdict": h.verdict if h else None, "issues": h.issues if h else None,
                "summary": (t.result or "")[:2000], "error": t.error,
            }
        )  # fmt: skip
        if t.status == TaskStatus.awaiting_input:
            question = pending_question(session, t.id)
            if question is not None:
                question["task_id"] = t.id
    data["steps"] = steps
    data["pending_question"] = question
    return data


def _get_run(session: Session, run_id: int) -> WorkflowRun:
    run = session.get(WorkflowRun, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"workflow {run_id} not found")
    return run


async def _start(cfg: CfgDep, client: Any, engine: Any, session: Session, name: str, body: CodeReviewCreate) -> dict:
    try:
        run = await start_workflow_run(cfg, client, engine, name, body.title, body.description, body.repo)
    except LaunchError as exc:
        raise HTTPException(422, str(exc)) from exc
    return run_public(session, cfg, session.get(WorkflowRun, run.id) or run)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_workflow(
    body: WorkflowCreate, session: SessionDep, cfg: CfgDep, client: TemporalClientDep, engine: EngineDep
) -> dict[str, Any]:
    """Start a workflow defined under `workflows:` in config.yml."""
    return await _start(cfg, client, engine, session, body.name, body)


@router.post("/code_review", status_code=status.HTTP_201_CREATED)
async def create_code_review(
    body: CodeReviewCreate, session: SessionDep, cfg: CfgDep, client: TemporalClientDep, engine: EngineDep
) -> dict[str, Any]:
    """Start the code-review loop: coder, reviewer, revisions until approved or max_iterations."""
    return await _start(cfg, client, engine, session, "code_review", body)


@router.get("")
def list_workflows(
    session: SessionDep,
    cfg: CfgDep,
    status_: str | None = Query(default=None, alias="status"),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """List workflow runs, newest first (`?status=`)."""
    q = select(WorkflowRun)
    if status_:
        if status_ not in WorkflowStatus.__members__:
            raise HTTPException(422, f"unknown status {status_!r} (one of {', '.join(WorkflowStatus.__members__)})")
        q = q.where(WorkflowRun.status == status_)
    return [
        run_public(session, cfg, r, detail=False) for r in session.exec(q.order_by(WorkflowRun.id.desc()).limit(limit))
    ]


@router.get("/definitions")
def list_definitions(cfg: CfgDep) -> dict[str, Any]:
    """The workflows that can be started, with their steps."""
    return {name: wf.model_dump() for name, wf in sorted(workflow_definitions(cfg).items())}


@router.get("/{run_id}")
def get_workflow(run_id: int, session: SessionDep, cfg: CfgDep) -> dict[str, Any]:
    """One workflow run: status, current step, iteration, steps so far, PR and any pending question."""
    return run_public(session, cfg, _get_run(session, run_id))


@router.post("/{run_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_workflow(run_id: int, session: SessionDep, cfg: CfgDep, client: TemporalClientDep) -> dict[str, Any]:
    """Cancel a workflow run: the running agent is killed, the branch kept."""
    run = _get_run(session, run_id)
    if run.status in _FINISHED:
        raise HTTPException(status.HTTP_409_CONFLICT, f"workflow {run_id} is already {run.status}")
    try:
        await client.get_workflow_handle(workflow_id(cfg, run_id)).cancel()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        run.status = WorkflowStatus.cancelled  # never started: nothing runs, just record it
        run.finished_at = utcnow()
        session.add(run)
        session.commit()
    return run_public(session, cfg, run)


@router.get("/{run_id}/handoffs")
def workflow_handoffs(run_id: int, session: SessionDep) -> list[dict[str, Any]]:
    """The run's handoffs in the order they were made."""
    _get_run(session, run_id)
    rows = session.exec(select(Handoff).where(Handoff.workflow_run_id == run_id).order_by(Handoff.id))
    return [handoff_public(h) for h in rows]
