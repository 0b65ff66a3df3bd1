"""Grouped figures over tasks and workflow runs: what the dashboard's Analytics page draws.

Counts and sums are grouped in SQL that SQLite and PostgreSQL both speak (`date()`, `CASE`,
`COUNT`, `SUM`, `AVG`); percentiles are taken in Python from the finished tasks' durations,
since the two databases share no percentile function.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, literal
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from factory.store.tables import Task, TaskStatus, WorkflowRun, session_scope

MAX_DAYS = 3660
"""`per_day` covers at most the window's last this many days."""


@dataclass
class Figures:
    """Runs, outcomes, cost and durations of one group of tasks."""

    runs: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    cost_usd: float = 0.0
    turns: int = 0
    success_rate: float | None = None  # done / (done + failed + cancelled); None before any finished
    median_duration_s: float | None = None
    p90_duration_s: float | None = None


@dataclass
class Analytics:
    """Everything the Analytics page shows for one window (and optionally one repo)."""

    since: datetime
    until: datetime
    repo: str | None
    totals: Figures
    per_day: list[dict[str, Any]] = field(default_factory=list)
    per_repo: list[dict[str, Any]] = field(default_factory=list)
    per_agent: list[dict[str, Any]] = field(default_factory=list)
    workflows: list[dict[str, Any]] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    """The `q` quantile (0..1) of `values` by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (_aware(end) - _aware(start)).total_seconds())


def _grouped(engine: Engine, key: Any, since: datetime, until: datetime, repo: str | None) -> dict[Any, Figures]:
    """Counts, cost and turns of the tasks created in the window, grouped by `key` (a column expression, or None)."""

    def count_of(status: TaskStatus) -> Any:
        return func.sum(case((col(Task.status) == status.value, 1), else_=0))

    q = select(
        (key if key is not None else literal(0)).label("k"),
        func.count().label("runs"),
        count_of(TaskStatus.done),
        count_of(TaskStatus.failed),
        count_of(TaskStatus.cancelled),
        func.coalesce(func.sum(Task.cost_usd), 0.0),
        func.coalesce(func.sum(Task.num_turns), 0),
    ).where(col(Task.created_at) >= since, col(Task.created_at) < until)
    if key is not None:  # None: one group of every task (PostgreSQL refuses GROUP BY a constant)
        q = q.group_by(key)
    if repo:
        q = q.where(Task.repo == repo)
    out: dict[Any, Figures] = {}
    with session_scope(engine) as s:
        for k, runs, done, failed, cancelled, cost, turns in s.exec(q):
            out[k] = Figures(
                runs=int(runs), done=int(done or 0), failed=int(failed or 0), cancelled=int(cancelled or 0),
                cost_usd=round(float(cost or 0), 6), turns=int(turns or 0),
            )  # fmt: skip
    return out


def _durations(engine: Engine, since: datetime, until: datetime, repo: str | None) -> list[tuple[str, str, float]]:
    """(repo, agent type, seconds) of every task in the window that ran to an end."""
    q = select(Task.repo, Task.agent_type, Task.started_at, Task.finished_at).where(
        col(Task.created_at) >= since,
        col(Task.created_at) < until,
        col(Task.started_at).is_not(None),
        col(Task.finished_at).is_not(None),
    )
    if repo:
        q = q.where(Task.repo == repo)
    with session_scope(engine) as s:
        rows = s.exec(q).all()
    return [(r, a, secs) for r, a, st, fin in rows if (secs := _seconds(st, fin)) is not None]


def _finish(fig: Figures, durations: list[float]) -> Figures:
    finished = fig.done + fig.failed + fig.cancelled
    fig.success_rate = round(fig.done / finished, 4) if finished else None
    fig.median_duration_s = percentile(durations, 0.5)
    fig.p90_duration_s = percentile(durations, 0.9)
    return fig


def _rows(groups: dict[Any, Figures], durations: dict[Any, list[float]], name: str) -> list[dict[str, Any]]:
    rows = [{name: k, **vars(_finish(fig, durations.get(k, [])))} for k, fig in groups.items()]
    return sorted(rows, key=lambda r: (-r["runs"], str(r[name])))


def _workflows(engine: Engine, since: datetime, until: datetime, repo: str | None) -> list[dict[str, Any]]:
    """Per configured workflow: runs, outcomes and review rounds (a run's iterations)."""
    approved = func.sum(case((col(WorkflowRun.approved).is_(True), 1), else_=0))
    q = (
        select(
            WorkflowRun.name,
            func.count(),
            func.sum(case((col(WorkflowRun.status) == "completed", 1), else_=0)),
            func.sum(case((col(WorkflowRun.status) == "failed", 1), else_=0)),
            approved,
            func.avg(WorkflowRun.iteration),
            func.max(WorkflowRun.iteration),
        )
        .where(col(WorkflowRun.created_at) >= since, col(WorkflowRun.created_at) < until)
        .group_by(WorkflowRun.name)
        .order_by(WorkflowRun.name)
    )
    if repo:
        q = q.where(WorkflowRun.repo == repo)
    with session_scope(engine) as s:
        rows = s.exec(q).all()
    return [
        {
            "name": name,
            "runs": int(runs),
            "completed": int(completed or 0),
            "failed": int(failed or 0),
            "approved": int(appr or 0),
            "avg_review_rounds": round(float(avg or 0), 2),
            "max_review_rounds": int(mx or 0),
        }  # fmt: skip
        for name, runs, completed, failed, appr, avg, mx in rows
    ]


def _day(value: Any) -> str:
    # SQLite's date() gives a string, PostgreSQL's a date
    return value.isoformat() if isinstance(value, date) else str(value)


def analytics(engine: Engine, since: datetime, until: datetime, repo: str | None = None) -> Analytics:
    """Grouped figures of the tasks and workflow runs created in [since, until), optionally of one repo.

    Args:
        engine: the database.
        since: the window's start (inclusive).
        until: the window's end (exclusive).
        repo: only this repo's tasks and runs.

    Returns:
        Totals, per day (every day of the window, empty ones too), per repo, per agent type and
        per workflow.
    """
    # the columns hold UTC and SQLModel binds only aware datetimes
    since_n, until_n = _aware(since).astimezone(UTC), _aware(until).astimezone(UTC)
    durations = _durations(engine, since_n, until_n, repo)
    by_repo, by_agent = defaultdict(list), defaultdict(list)
    for r, a, secs in durations:
        by_repo[r].append(secs)
        by_agent[a].append(secs)
    totals = _grouped(engine, None, since_n, until_n, repo)
    total = _finish(next(iter(totals.values()), Figures()), [d for _, _, d in durations])
    days = {_day(k): v for k, v in _grouped(engine, func.date(Task.created_at), since_n, until_n, repo).items()}
    per_day = []
    # until is exclusive (a window ending at midnight has no part of that day)
    last = (until_n - timedelta(microseconds=1)).date() if until_n > since_n else since_n.date()
    day = max(since_n.date(), last - timedelta(days=MAX_DAYS - 1) if last.toordinal() > MAX_DAYS else date.min)
    while day <= last and until_n > since_n:
        fig = days.get(day.isoformat(), Figures())
        per_day.append({"day": day.isoformat(), "runs": fig.runs, "done": fig.done, "failed": fig.failed,
                        "cost_usd": fig.cost_usd})  # fmt: skip
        if day == date.max:
            break
        day += timedelta(days=1)
    return Analytics(
        since=_aware(since),
        until=_aware(until),
        repo=repo,
        totals=total,
        per_day=per_day,
        per_repo=_rows(_grouped(engine, Task.repo, since_n, until_n, repo), by_repo, "repo"),
        per_agent=_rows(_grouped(engine, Task.agent_type, since_n, until_n, repo), by_agent, "agent_type"),
        workflows=_workflows(engine, since_n, until_n, repo),
    )
