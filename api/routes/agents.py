"""Running agents."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import select

from api.deps import SessionDep
from factory.store.tables import AgentRun, Task

router = APIRouter(prefix="/api/agents", tags=["agents"])


@router.get("")
def list_agents(session: SessionDep) -> list[dict[str, Any]]:
    """Agent processes running now: task, type, host, started, last output."""
    rows = session.exec(select(AgentRun).where(AgentRun.ended_at.is_(None)).order_by(AgentRun.id))
    out = []
    for run in rows:
        task = session.get(Task, run.task_id)
        out.append(
            {
                "task_id": run.task_id,
                "title": task.title if task else None,
                "agent_type": run.agent_type,
                "host": run.host,
                "pid": run.pid,
                "started_at": run.started_at.isoformat(),
                "last_output_at": run.last_output_at.isoformat() if run.last_output_at else None,
                "last_output": run.last_output,
            }
        )
    return out
