"""Handoffs: pass a finished task's work to another agent type on the same branch."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlmodel import select

from api.deps import CfgDep, SessionDep, TemporalClientDep
from api.launch import AlreadyRunning, LaunchError, TaskStart, agent_spec, resolve_checked, start_task
from api.routes.tasks import get_task_or_404, task_public
from api.routes.workflows import handoff_public
from factory.domain.handoffs import handoff_section
from factory.store.tables import FINISHED, Handoff, Task

router = APIRouter(prefix="/api/handoffs", tags=["handoffs"])


class HandoffCreate(BaseModel):
    from_task_id: int
    to_agent: str = Field(max_length=100)
    context: str = Field(default="", max_length=50_000, description="what the next agent should do or know")
    title: str | None = Field(default=None, max_length=500)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_handoff(
    body: HandoffCreate, session: SessionDep, cfg: CfgDep, client: TemporalClientDep
) -> dict[str, Any]:
    """Hand a finished task's work to another agent: a new task on the same branch with the context."""
    src = get_task_or_404(session, body.from_task_id)
    if src.status not in FINISHED:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task {src.id} is {src.status}; hand off a finished task")
    if not src.branch:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task {src.id} has no branch to hand on")
    try:
        agent_spec(cfg, body.to_agent)
        ref = await resolve_checked(cfg, src.repo)
    except LaunchError as exc:
        raise HTTPException(422, str(exc)) from exc
    handoff = Handoff(
        from_task_id=src.id, from_agent=src.agent_type, to_agent=body.to_agent, summary=src.result or "",
        changed_files=src.changed_files, diff_stat=None,
    )  # fmt: skip
    task = Task(
        title=body.title or f"{src.title} [{body.to_agent}, handoff from task #{src.id}]",
        description=src.description, repo=src.repo, agent_type=body.to_agent, parent_task_id=src.id,
        branch=src.branch,
    )  # fmt: skip
    session.add(handoff)
    session.add(task)
    session.commit()
    session.refresh(handoff)
    session.refresh(task)
    parts = [
        handoff_section(
            f"Handoff from {src.agent_type} (task #{src.id})", src.result or "", None, None, src.changed_files
        )
    ]
    if body.context.strip():
        parts.append("## What to do next\n" + body.context.strip())
    try:
        await start_task(
            cfg, client, task, TaskStart(branch=src.branch, context="\n\n".join(parts), parent_task_id=src.id), ref=ref
        )
    except AlreadyRunning as exc:  # pragma: no cover - a fresh task id cannot be running
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    handoff.to_task_id = task.id
    session.add(handoff)
    session.commit()
    session.refresh(handoff)
    return {**handoff_public(handoff), "task": task_public(session, task)}


@router.get("")
def list_handoffs(
    session: SessionDep,
    workflow_id: int | None = Query(default=None),
    task_id: int | None = Query(default=None),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Handoffs, newest first (`?workflow_id=`, `?task_id=` for from or to)."""
    q = select(Handoff)
    if workflow_id is not None:
        q = q.where(Handoff.workflow_run_id == workflow_id)
    if task_id is not None:
        q = q.where((Handoff.from_task_id == task_id) | (Handoff.to_task_id == task_id))
    return [handoff_public(h) for h in session.exec(q.order_by(Handoff.id.desc()).limit(limit))]


@router.get("/{handoff_id}")
def get_handoff(handoff_id: int, session: SessionDep) -> dict[str, Any]:
    """One handoff."""
    h = session.get(Handoff, handoff_id)
    if h is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"handoff {handoff_id} not found")
    return handoff_public(h)
