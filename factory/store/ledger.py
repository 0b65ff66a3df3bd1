"""The cost ledger: one row per agent run and model, and its sums.

Agent runs are written from the model gateway's meter (`record_metered`: the model server's own
token counts, priced by `sandbox.model_prices`), never from the CLI's result line, which an agent
can forge. `record_result` reads a CLI result as it came (kept for figures from elsewhere).
Budgets (`factory.domain.budgets`) and `GET /api/costs` read the sums.

Every function here is a blocking database call: from async code, run it in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from factory.domain.budgets import day_of
from factory.store.tables import CostEntry, session_scope, utcnow

GroupBy = Literal["day", "repo", "agent_type", "workflow", "task", "model", "backend"]
GROUPS: dict[str, Any] = {
    "day": CostEntry.day,
    "repo": CostEntry.repo,
    "agent_type": CostEntry.agent_type,
    "workflow": CostEntry.workflow_run_id,
    "task": CostEntry.task_id,
    "model": CostEntry.model,
    "backend": CostEntry.backend,
}
"""What `GET /api/costs?group_by=` can group by, and the column of each."""


class Clock:
    """The ledger's idea of now. Tests shift it to roll a day over without waiting for midnight."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return utcnow() + self.offset


CLOCK = Clock()
"""The clock budgets read at check time (the agent activity and the budget hold)."""


def today(timezone: str) -> str:
    """Today's date (YYYY-MM-DD) in `timezone`, by `CLOCK`."""
    return day_of(CLOCK.now(), timezone)


@dataclass
class RunInfo:
    """Which run a result belongs to."""

    agent_run_id: int | None
    task_id: int
    workflow_run_id: int | None
    repo: str
    agent_type: str
    session_id: str | None
    day: str
    model: str = ""  # the model asked for, used when the result names none
    backend: str = "claude"  # the agent CLI that ran (factory/backends/)


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def _float(v: Any) -> float:
    try:
        return float(v or 0.0)
    except (TypeError, ValueError):
        return 0.0


def entries_of(result: dict[str, Any], run: RunInfo) -> list[CostEntry]:
    """The ledger rows of one CLI result line: one per model in `modelUsage`, else one from `usage`."""
    per_model = result.get("modelUsage")
    rows: list[CostEntry] = []
    base = dict(
        agent_run_id=run.agent_run_id, task_id=run.task_id, workflow_run_id=run.workflow_run_id, repo=run.repo,
        agent_type=run.agent_type, session_id=run.session_id, day=run.day,
    )  # fmt: skip
    if isinstance(per_model, dict) and per_model:
        for model, u in per_model.items():
            u = u if isinstance(u, dict) else {}
            rows.append(
                CostEntry(
                    **base,
                    model=str(model),
                    input_tokens=_int(u.get("inputTokens")),
                    output_tokens=_int(u.get("outputTokens")),
                    cache_read_tokens=_int(u.get("cacheReadInputTokens")),
                    cache_write_tokens=_int(u.get("cacheCreationInputTokens")),
                    cost_usd=_float(u.get("costUSD")),
                )  # fmt: skip
            )
        return rows
    u = result.get("usage") if isinstance(result.get("usage"), dict) else {}
    return [
        CostEntry(
            **base,
            model=run.model,
            input_tokens=_int(u.get("input_tokens")),
            output_tokens=_int(u.get("output_tokens")),
            cache_read_tokens=_int(u.get("cache_read_input_tokens")),
            cache_write_tokens=_int(u.get("cache_creation_input_tokens")),
            cost_usd=_float(result.get("total_cost_usd")),
        )  # fmt: skip
    ]


def record_metered(engine: Engine, models: dict[str, Any], run: RunInfo) -> float:
    """Write one run's rows from the model gateway's meter (model -> tokens and cost); its cost.

    A run that made no model request still gets one row (nothing spent), so every run is counted.
    """
    base = dict(
        agent_run_id=run.agent_run_id, task_id=run.task_id, workflow_run_id=run.workflow_run_id, repo=run.repo,
        agent_type=run.agent_type, session_id=run.session_id, day=run.day, backend=run.backend,
    )  # fmt: skip
    rows = [
        CostEntry(
            **base, model=model, input_tokens=t.input, output_tokens=t.output, cache_read_tokens=t.cache_read,
            cache_write_tokens=t.cache_write, cost_usd=max(0.0, t.cost),
        )  # fmt: skip
        for model, t in models.items()
    ] or [CostEntry(**base, model=run.model)]
    return _write(engine, rows)


def _write(engine: Engine, rows: list[CostEntry]) -> float:
    with session_scope(engine) as s:
        for row in rows:
            s.add(row)
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
    return sum(r.cost_usd for r in rows)


def record_result(engine: Engine, result: dict[str, Any], run: RunInfo) -> float:
    """Write one run's rows (once: a second call for the same agent run writes nothing); its cost."""
    rows = entries_of(result, run)
    return _write(engine, rows)


def spent(engine: Engine, task_id: int, workflow_run_id: int | None, repo: str, day: str) -> dict[str, float]:
    """What the task, its workflow run, its repo today and everyone today have spent, by budget key."""
    total = func.coalesce(func.sum(CostEntry.cost_usd), 0.0)
    with session_scope(engine) as s:
        out = {
            "task": s.exec(select(total).where(CostEntry.task_id == task_id)).one(),
            "repo_daily": s.exec(select(total).where(CostEntry.day == day, CostEntry.repo == repo)).one(),
            "daily": s.exec(select(total).where(CostEntry.day == day)).one(),
        }
        if workflow_run_id is not None:
            out["workflow"] = s.exec(select(total).where(CostEntry.workflow_run_id == workflow_run_id)).one()
    return {k: float(v or 0.0) for k, v in out.items()}


def task_total(engine: Engine, task_id: int) -> float:
    """The task's ledger total in USD."""
    with session_scope(engine) as s:
        v = s.exec(select(func.coalesce(func.sum(CostEntry.cost_usd), 0.0)).where(CostEntry.task_id == task_id)).one()
    return float(v or 0.0)


def workflow_total(engine: Engine, run_id: int) -> float:
    """The workflow run's ledger total in USD (all its steps' tasks)."""
    with session_scope(engine) as s:
        v = s.exec(
            select(func.coalesce(func.sum(CostEntry.cost_usd), 0.0)).where(CostEntry.workflow_run_id == run_id)
        ).one()
    return float(v or 0.0)


def grouped(
    engine: Engine, group_by: str, since: date | None = None, until: date | None = None
) -> list[dict[str, Any]]:
    """Sums of cost and tokens per `group_by` value (a key of GROUPS), days from `since` to `until` inclusive.

    Raises:
        ValueError: `group_by` is not a key of GROUPS.
    """
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    key = GROUPS[group_by]
    stmt = select(
        key,
        func.sum(CostEntry.cost_usd),
        func.sum(CostEntry.input_tokens),
        func.sum(CostEntry.output_tokens),
        func.sum(CostEntry.cache_read_tokens),
        func.sum(CostEntry.cache_write_tokens),
        func.count(func.distinct(CostEntry.agent_run_id)),
    ).group_by(key)
    if since is not None:
        stmt = stmt.where(CostEntry.day >= since.isoformat())
    if until is not None:
        stmt = stmt.where(CostEntry.day <= until.isoformat())
    with session_scope(engine) as s:
        rows = s.exec(stmt.order_by(key)).all()
    return [
        {
            "key": k,
            "cost_usd": round(float(cost or 0.0), 6),
            "input_tokens": int(i or 0),
            "output_tokens": int(o or 0),
            "cache_read_tokens": int(cr or 0),
            "cache_write_tokens": int(cw or 0),
            "runs": int(n or 0),
        }
        for k, cost, i, o, cr, cw, n in rows
    ]
