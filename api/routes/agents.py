"""Running agents."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import select

from api.deps import SessionDep
from api.errors import JSONRoute
from api.schemas import AgentRunPublic
from factory.store.tables import AgentRun, Task

router = APIRouter(prefix="/api/agents", tags=["agents"], route_class=JSONRoute)


@router.get("", response_model=list[AgentRunPublic])
def list_agents(session: SessionDep) -> list[AgentRunPublic]:
    """Agent processes running now: task, type, host, started, last output."""
    rows = session.exec(select(AgentRun).where(AgentRun.ended_at.is_(None)).order_by(AgentRun.id))
    return [AgentRunPublic.of(run, session.get(Task, run.task_id)) for run in rows]
