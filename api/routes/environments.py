"""Agents' Docker environments on this host: list them, remove one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel

from api.deps import CfgDep, IdQuery
from api.errors import JSONRoute, responses
from factory.environments import docker as environments
from factory.environments.compose import namespace, parse_project_name

router = APIRouter(prefix="/api/environments", tags=["environments"], route_class=JSONRoute)


class EnvironmentPublic(BaseModel):
    name: str
    task_id: int
    kind: str
    repo: str = ""
    created: float | None = None
    containers: list[str] = []
    status: str
    url: str | None = None
    networks: list[str] = []
    volumes: list[str] = []


class EnvironmentRemoved(BaseModel):
    name: str
    removed: bool = True


@router.get("", response_model=list[EnvironmentPublic], responses=responses(422))
async def list_environments(
    cfg: CfgDep, task_id: IdQuery = None, kind: Literal["test", "preview"] | None = Query(default=None)
) -> list[EnvironmentPublic]:
    """List this deployment's labelled environments, optionally of one task and/or kind."""
    ns = namespace(cfg.temporal.id_prefix)
    envs = await environments.list_environments(task_id=task_id, kind=kind, ns=ns)
    return [EnvironmentPublic.model_validate(e, from_attributes=True) for e in envs]


@router.delete("/{name}", response_model=EnvironmentRemoved, responses=responses(404, 422))
async def delete_environment(cfg: CfgDep, name: Annotated[str, Path(max_length=200)]) -> EnvironmentRemoved:
    """Remove one of this deployment's environments (containers, networks, volumes) by its project name."""
    ns = namespace(cfg.temporal.id_prefix)  # another deployment's environment is not there for this one
    if parse_project_name(name, ns) is None:
        form = f"factory-{ns + '-' if ns else ''}task-<id>-test|preview"
        raise HTTPException(404, f"{name!r} is not an environment name of this deployment ({form})")
    if not await environments.tear_down(name, ns):
        raise HTTPException(404, f"no environment {name!r} on this host")
    return EnvironmentRemoved(name=name)
