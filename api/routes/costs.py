"""What agents cost: the ledger's sums grouped by day, repo, agent type or workflow run."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import EngineDep
from api.errors import JSONRoute, responses
from factory.store import ledger

router = APIRouter(prefix="/api/costs", tags=["costs"], route_class=JSONRoute)

GroupBy = Literal["day", "repo", "agent_type", "workflow", "backend"]


class CostGroup(BaseModel):
    """The sums of one group: dollars, tokens and agent runs."""

    key: str | int | None  # the day (YYYY-MM-DD), repo, agent type or workflow run id (null: tasks of no workflow)
    cost_usd: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    runs: int


class CostsPublic(BaseModel):
    """Grouped sums over the days asked for (inclusive; days in `budgets.timezone`)."""

    group_by: GroupBy
    since: date | None
    until: date | None
    total_usd: float
    groups: list[CostGroup]


@router.get("", response_model=CostsPublic, responses=responses(422))
def list_costs(
    engine: EngineDep,
    group_by: Annotated[GroupBy, Query(description="what to sum by")] = "day",
    since: Annotated[date | None, Query(description="first day counted, YYYY-MM-DD")] = None,
    until: Annotated[date | None, Query(description="last day counted, YYYY-MM-DD")] = None,
) -> CostsPublic:
    """Sum the ledger by day, repo, agent type or workflow run (`since` after `until`: no groups)."""
    groups = [CostGroup(**g) for g in ledger.grouped(engine, group_by, since, until)]
    total = round(sum(g.cost_usd for g in groups), 6)
    return CostsPublic(group_by=group_by, since=since, until=until, total_usd=total, groups=groups)
