"""The audit log: read it (filtered, newest first, by cursor), export it as JSON lines, and a task's entries.

There is no route that changes or removes an entry: the log is append-only (factory/store/audit.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.deps import EngineDep, IdPath, IdQuery, SessionDep
from api.errors import JSONRoute, responses
from api.people_schemas import AuditPage, AuditPublic
from factory.store import audit
from factory.store.views import get_task

router = APIRouter(prefix="/api", tags=["audit"], route_class=JSONRoute)

Text = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")]


@router.get("/audit", response_model=AuditPage, responses=responses(422))
async def read_audit(
    engine: EngineDep,
    actor: Text = None,
    action: Text = None,
    task_id: IdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: IdQuery = None,
) -> AuditPage:
    """Who did what, newest first; `cursor` is the `next_cursor` of the previous page."""
    rows = await run_in_threadpool(
        lambda: audit.entries(engine, actor=actor, action=action, task_id=task_id, before_id=cursor, limit=limit)
    )
    return AuditPage(
        entries=[AuditPublic.model_validate(r) for r in rows],
        next_cursor=rows[-1].id if len(rows) == limit else None,
    )


def _lines(engine: EngineDep) -> Iterator[str]:
    for row in audit.export(engine):
        yield json.dumps(AuditPublic.model_validate(row).model_dump(mode="json")) + "\n"


@router.get(
    "/audit/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "one JSON object per line, oldest first"}},
)
def export_audit(engine: EngineDep) -> StreamingResponse:
    """The whole audit log as JSON lines, oldest first, streamed a page at a time."""
    return StreamingResponse(_lines(engine), media_type="application/x-ndjson")


@router.get("/tasks/{task_id}/audit", response_model=list[AuditPublic], responses=responses(404, 422))
def task_audit(task_id: IdPath, session: SessionDep, engine: EngineDep) -> list[AuditPublic]:
    """Who created, answered, cancelled, retried this task or raised its budget, oldest first."""
    get_task(session, task_id)
    rows = audit.entries(engine, task_id=task_id, limit=1000)
    return [AuditPublic.model_validate(r) for r in reversed(rows)]
