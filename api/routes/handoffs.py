"""Handoffs: pass a finished task's work to another agent type on the same branch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlmodel import select

from api.bodies import HandoffCreate
from api.deps import IdPath, IdQuery, LauncherDep, SessionDep, temporal_call
from api.errors import JSONRoute, responses
from api.schemas import HandoffCreated, HandoffPublic
from factory.store.tables import Handoff

router = APIRouter(prefix="/api/handoffs", tags=["handoffs"], route_class=JSONRoute)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=HandoffCreated, responses=responses(404, 409, 413, 422, 503)
)
async def create_handoff(body: HandoffCreate, launcher: LauncherDep) -> HandoffCreated:
    """Hand a finished task's work to another agent: a new task on the same branch with the context."""
    async with temporal_call(launcher):
        handoff, task = await launcher.hand_off(body.from_task_id, body.to_agent, body.context, body.title)
    return HandoffCreated.of(handoff, task)


@router.get("", response_model=list[HandoffPublic], responses=responses(422))
def list_handoffs(
    session: SessionDep,
    workflow_id: IdQuery = None,
    task_id: IdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[HandoffPublic]:
    """Handoffs, newest first (`?workflow_id=`, `?task_id=` for from or to)."""
    q = select(Handoff)
    if workflow_id is not None:
        q = q.where(Handoff.workflow_run_id == workflow_id)
    if task_id is not None:
        q = q.where((Handoff.from_task_id == task_id) | (Handoff.to_task_id == task_id))
    return [HandoffPublic.model_validate(h) for h in session.exec(q.order_by(Handoff.id.desc()).limit(limit))]


@router.get("/{handoff_id}", response_model=HandoffPublic, responses=responses(404, 422))
def read_handoff(handoff_id: IdPath, session: SessionDep) -> HandoffPublic:
    """One handoff."""
    h = session.get(Handoff, handoff_id)
    if h is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"handoff {handoff_id} not found")
    return HandoffPublic.model_validate(h)
