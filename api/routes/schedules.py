"""Schedules: recurring tasks or workflow runs, kept as Temporal Schedules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, Field

from api.deps import CfgDep, LauncherDep, temporal_call
from api.errors import JSONRoute, responses
from factory.config import FactoryConfig
from factory.config_sections import ScheduleConfig
from factory.git.repos import RepoError, resolve_repo
from factory.launcher import Launcher, LaunchError
from factory.tasks.ports import ScheduleBook
from temporal import schedules as sched

router = APIRouter(prefix="/api/schedules", tags=["schedules"], route_class=JSONRoute)

NamePath = Annotated[str, Path(pattern=sched.NAME.pattern, description="the schedule's name")]


class ScheduleCreate(ScheduleConfig):
    """A new schedule: its name, cron expression, time zone and the task or workflow it starts."""

    name: str = Field(pattern=sched.NAME.pattern)


SchedulePublic = sched.ScheduleInfo  # shown as Temporal reports it


class ScheduleAction(BaseModel):
    name: str
    status: str


def _book(launcher: Launcher) -> ScheduleBook:
    if launcher.schedules is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "schedules need a Temporal connection")
    return launcher.schedules


def _check(cfg: FactoryConfig, body: ScheduleCreate) -> None:
    try:
        resolve_repo(cfg, body.repo)
    except RepoError as exc:
        raise LaunchError(f"repo: {exc}") from exc
    if body.workflow and body.workflow not in cfg.workflows:
        raise LaunchError(f"workflow: unknown workflow {body.workflow!r}")
    if body.agent_type and body.agent_type not in cfg.agent_templates:
        raise LaunchError(f"agent_type: unknown agent type {body.agent_type!r}")


@router.get("", response_model=list[SchedulePublic], responses=responses(503))
async def list_schedules(cfg: CfgDep, launcher: LauncherDep) -> list[SchedulePublic]:
    """Every schedule, with its next and recent firings."""
    async with temporal_call(launcher):
        found = await _book(launcher).list()
    return [s for s in found]


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=SchedulePublic, responses=responses(409, 413, 422, 503)
)
async def create_schedule(body: ScheduleCreate, cfg: CfgDep, launcher: LauncherDep) -> SchedulePublic:
    """Create a schedule (409 when the name is taken)."""
    _check(cfg, body)
    spec = ScheduleConfig(**body.model_dump(exclude={"name"}))
    book = _book(launcher)
    async with temporal_call(launcher):
        return await book.create(body.name, spec)


@router.get("/{name}", response_model=SchedulePublic, responses=responses(404, 422, 503))
async def get_schedule(name: NamePath, cfg: CfgDep, launcher: LauncherDep) -> SchedulePublic:
    """One schedule."""
    async with temporal_call(launcher):
        return await _book(launcher).describe(name)


@router.post("/{name}/pause", response_model=ScheduleAction, responses=responses(404, 422, 503))
async def pause_schedule(name: NamePath, cfg: CfgDep, launcher: LauncherDep) -> ScheduleAction:
    """Pause a schedule (it keeps its place; a restart does not unpause it)."""
    async with temporal_call(launcher):
        await _book(launcher).pause(name, paused=True)
    return ScheduleAction(name=name, status="paused")


@router.post("/{name}/unpause", response_model=ScheduleAction, responses=responses(404, 422, 503))
async def unpause_schedule(name: NamePath, cfg: CfgDep, launcher: LauncherDep) -> ScheduleAction:
    """Unpause a schedule."""
    async with temporal_call(launcher):
        await _book(launcher).pause(name, paused=False)
    return ScheduleAction(name=name, status="active")


@router.post("/{name}/trigger", response_model=ScheduleAction, responses=responses(404, 422, 503))
async def trigger_schedule(name: NamePath, cfg: CfgDep, launcher: LauncherDep) -> ScheduleAction:
    """Fire a schedule now (skipped when its last work is still running)."""
    async with temporal_call(launcher):
        await _book(launcher).trigger(name)
    return ScheduleAction(name=name, status="triggered")


@router.delete("/{name}", response_model=ScheduleAction, responses=responses(404, 422, 503))
async def delete_schedule(name: NamePath, cfg: CfgDep, launcher: LauncherDep) -> ScheduleAction:
    """Delete a schedule (one from config.yml returns at the next start unless removed there)."""
    async with temporal_call(launcher):
        await _book(launcher).delete(name)
    return ScheduleAction(name=name, status="deleted")
