"""Analytics: grouped figures over tasks and workflow runs (success, durations, runs and cost)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, WithJsonSchema

from api.deps import EngineDep
from api.errors import JSONRoute, responses
from factory.store.analytics import analytics

router = APIRouter(prefix="/api/analytics", tags=["analytics"], route_class=JSONRoute)

DEFAULT_DAYS = 30


class FiguresPublic(BaseModel):
    runs: int
    done: int
    failed: int
    cancelled: int
    cost_usd: float
    turns: int
    success_rate: float | None = Field(description="done / finished (done, failed, cancelled); null before any")
    median_duration_s: float | None
    p90_duration_s: float | None


class DayPublic(BaseModel):
    day: str = Field(description="YYYY-MM-DD (UTC)")
    runs: int
    done: int
    failed: int
    cost_usd: float


class RepoFigures(FiguresPublic):
    repo: str


class AgentFigures(FiguresPublic):
    agent_type: str


class WorkflowFigures(BaseModel):
    name: str
    runs: int
    completed: int
    failed: int
    approved: int
    avg_review_rounds: float = Field(description="the runs' mean iteration count (review rounds)")
    max_review_rounds: int


class AnalyticsPublic(BaseModel):
    since: datetime
    until: datetime
    repo: str | None
    totals: FiguresPublic
    per_day: list[DayPublic]
    per_repo: list[RepoFigures]
    per_agent: list[AgentFigures]
    workflows: list[WorkflowFigures]


def _moment(value: str | None, name: str, end: bool) -> datetime | None:
    """A date (that day's start, or for `until` the next day's) or a date-time, in UTC; clamped to what Python holds."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day, time(), UTC) + timedelta(days=1 if end else 0)
        moment = datetime.fromisoformat(value.upper())  # RFC 3339 allows a lower-case t and z
    except OverflowError:  # the day after the last representable one
        return datetime.max.replace(tzinfo=UTC)
    except ValueError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"query.{name}: not a date (YYYY-MM-DD) or an ISO 8601 date-time"
        ) from exc
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:  # an offset past the first or last representable moment
        return datetime.max.replace(tzinfo=UTC) if moment.year > 1 else datetime.min.replace(tzinfo=UTC)


_WHEN = WithJsonSchema({"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]})


@router.get("", response_model=AnalyticsPublic, responses=responses(422))
async def read_analytics(
    engine: EngineDep,
    since: Annotated[str | None, Query(max_length=40, description="start: a date or an ISO date-time"), _WHEN] = None,
    until: Annotated[
        str | None, Query(max_length=40, description="end: a date (counted whole) or date-time"), _WHEN
    ] = None,
    repo: Annotated[str | None, Query(max_length=300)] = None,
) -> dict[str, Any]:
    """Success rate, median and p90 duration, runs and cost per day, per repo, per agent type and per workflow.

    The window is [since, until): by default the 30 days up to now. An empty window (since after
    until) has no runs; `per_day` lists at most the window's last 3660 days.
    """
    end = _moment(until, "until", end=True) or datetime.now(UTC)
    start = _moment(since, "since", end=False)
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS) if end.year > 1 else end
    return asdict(await run_in_threadpool(analytics, engine, start, end, repo or None))
