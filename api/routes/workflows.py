"""Workflows: start a configured workflow (or the code-review loop), list, inspect, cancel, handoffs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session, select

from api.bodies import CodeReviewCreate, WorkflowCreate
from api.deps import CfgDep, IdPath, LauncherDep, SessionDep, temporal_call
from api.errors import JSONRoute, responses
from api.schemas import HandoffPublic, RunPublic, RunSummary
from factory.config import WorkflowConfig
from factory.launcher import Launcher
from factory.specs import run_workflow_id, workflow_definitions
from factory.store.tables import Handoff, WorkflowRun, WorkflowStatus
from factory.store.views import get_run, run_detail

router = APIRouter(prefix="/api/workflows", tags=["workflows"], route_class=JSONRoute)


def _public(session: Session, launcher: Launcher, run_id: int) -> RunPublic:
    run = get_run(session, run_id)
    session.refresh(run)  # the launcher writes through its own session
    return RunPublic.of(run, launcher.run_workflow_id(run.id), run_detail(session, run))


async def _start(session: Session, launcher: Launcher, name: str, body: CodeReviewCreate) -> RunPublic:
    async with temporal_call(launcher, "; the run was recorded as failed"):
        run = await launcher.start_workflow_run(name, body.title, body.description, body.repo)
    return await run_in_threadpool(_public, session, launcher, run.id)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RunPublic, responses=responses(413, 422, 503))
async def create_workflow(body: WorkflowCreate, session: SessionDep, launcher: LauncherDep) -> RunPublic:
    """Start a workflow defined under `workflows:` in config.yml."""
    return await _start(session, launcher, body.name, body)


@router.post(
    "/code_review", status_code=status.HTTP_201_CREATED, response_model=RunPublic, responses=responses(413, 422, 503)
)
async def create_code_review(body: CodeReviewCreate, session: SessionDep, launcher: LauncherDep) -> RunPublic:
    """Start the code-review loop: coder, reviewer, revisions until approved or max_iterations."""
    return await _start(session, launcher, "code_review", body)


@router.get("", response_model=list[RunSummary], responses=responses(422))
def list_workflows(
    session: SessionDep,
    cfg: CfgDep,
    status_: Annotated[WorkflowStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RunSummary]:
    """List workflow runs, newest first (`?status=`)."""
    q = select(WorkflowRun)
    if status_:
        q = q.where(WorkflowRun.status == status_)
    rows = session.exec(q.order_by(WorkflowRun.id.desc()).limit(limit))
    return [RunSummary.of(r, run_workflow_id(cfg, r.id)) for r in rows]


@router.get("/definitions", response_model=dict[str, WorkflowConfig])
def list_definitions(cfg: CfgDep) -> dict[str, WorkflowConfig]:
    """The workflows that can be started, with their steps."""
    return dict(sorted(workflow_definitions(cfg).items()))


@router.get("/{run_id}", response_model=RunPublic, responses=responses(404, 422))
def read_workflow(run_id: IdPath, session: SessionDep, cfg: CfgDep) -> RunPublic:
    """One workflow run: status, current step, iteration, steps so far, PR and any pending question."""
    run = get_run(session, run_id)
    return RunPublic.of(run, run_workflow_id(cfg, run.id), run_detail(session, run))


@router.post(
    "/{run_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=RunPublic,
    responses=responses(404, 409, 422, 503),
)  # fmt: skip
async def cancel_workflow(run_id: IdPath, session: SessionDep, launcher: LauncherDep) -> RunPublic:
    """Cancel a workflow run: the running agent is killed, the branch kept."""
    async with temporal_call(launcher):
        await launcher.cancel_run(run_id)
    return await run_in_threadpool(_public, session, launcher, run_id)


@router.get("/{run_id}/handoffs", response_model=list[HandoffPublic], responses=responses(404, 422))
def workflow_handoffs(run_id: IdPath, session: SessionDep) -> list[HandoffPublic]:
    """The run's handoffs in the order they were made."""
    get_run(session, run_id)
    rows = session.exec(select(Handoff).where(Handoff.workflow_run_id == run_id).order_by(Handoff.id))
    return [HandoffPublic.model_validate(h) for h in rows]
