"""Budgets at run time: what is left before an agent runs, the ledger after it, and the daily hold.

`BudgetKeeper` is the agent activity's helper (blocking calls: run them in a thread);
`BudgetActivities.check_budget_hold` is what a new task asks before it starts while a daily
budget is set. The day is read from `factory.store.ledger.CLOCK`, which tests shift.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from temporalio import activity

from factory.config import FactoryConfig
from factory.contracts import AgentRequest, AgentResult, BudgetStop, HoldCheck, HoldState  # noqa: F401 (the wire forms live in factory.contracts)
from factory.domain.budgets import (
    DAILY,
    Budget,
    budgets,
    exhausted,
    held_by,
    hold_reason,
    labels,
    smallest,
    usd,
    warning,
)
from factory.sandbox.gateway import RunMeter
from factory.store import ledger
from factory.store.board import Board
from factory.store.tables import Task, session_scope
from factory.store.writes import add_log

HOLD_PREFIX = "held: daily budget reached"


@dataclass
class Gate:
    """A run's budgets before it starts: the one that caps it, or the result of a run refused outright."""

    before: list[Budget]
    cap: Budget | None = None
    refused: AgentResult | None = None


class BudgetKeeper:
    """Budgets of one agent run, read before it starts and written after it ends."""

    def __init__(self, cfg: FactoryConfig, engine: Engine, board: Board | None = None) -> None:
        self.cfg = cfg
        self.engine = engine
        self.board = board

    def current(
        self, task_id: int, workflow_run_id: int | None, repo: str, agent_type: str,
        raised: dict[str, float] | None = None, run_limit: float | None = None,
    ) -> list[Budget]:  # fmt: skip
        """The budgets set for this run, with what each has spent (`raised`: limits an answer raised)."""
        b = self.cfg.budgets
        limits: dict[str, float | None] = {
            "run": run_limit,
            "task": b.per_task_usd,
            "workflow": b.per_workflow_usd if workflow_run_id is not None else None,
            "repo_daily": b.per_repo_daily_usd,
            "daily": b.daily_usd,
        }
        for key, value in (raised or {}).items():
            if key in limits:
                limits[key] = value
        if not any(v is not None for v in limits.values()):
            return []
        spent = ledger.spent(self.engine, task_id, workflow_run_id, repo, ledger.today(b.timezone))
        return budgets(limits, spent, labels(agent_type, repo, b.timezone))

    def before(self, req: AgentRequest) -> list[Budget]:
        """The budgets of the run `req` is about to start."""
        return self.current(
            req.task_id, req.workflow_run_id, req.repo_name, req.agent.agent_type, req.budget_limits,
            req.budget_limits.get("run", req.agent.max_budget_usd),
        )  # fmt: skip

    def gate(self, req: AgentRequest) -> Gate:
        """What caps the run `req` is about to start, or, when a budget has nothing left, its refusal."""
        before = self.before(req)
        used_up = exhausted(before)
        if used_up is None:
            return Gate(before, cap=smallest(before))
        text = f"budget reached before the run: {usd(used_up.spent)} of {usd(used_up.limit)} for {used_up.label}"
        refused = AgentResult(
            session_id=req.session_id, result_text=text, is_error=True, subtype="budget_exhausted",
            budget_stop=stop_of(used_up, used_up.spent),
        )  # fmt: skip
        return Gate(before, refused=refused)

    async def settle(
        self, req: AgentRequest, gate: Gate, meter: RunMeter, result: AgentResult,
        final: dict[str, Any] | None = None, attempt: int = 1,
    ) -> None:  # fmt: skip
        """After a run: its cost (the gateway's), the board's warnings, and `result.budget_stop` if a cap stopped it.

        The run stopped at its budget when the CLI said so (`error_max_budget_usd`, its own cap) or
        when the gateway refused a request for it; the CLI's `total_cost_usd` (`final`) is only logged.
        """
        cost = meter.cost
        result.cost_usd = cost
        hint = (final or {}).get("total_cost_usd")
        await asyncio.to_thread(add_log, self.engine, req.task_id, "event", cost_line(meter, hint), attempt)
        await self.warn(req, gate.before, cost)
        cap = gate.cap
        if meter.refused_for_budget and cap is not None:  # a budget the CLI's own cap did not see
            result.is_error, result.subtype = True, "error_max_budget_usd"
            result.result_text = result.result_text or "the model gateway refused further requests at the budget"
        if result.subtype == "error_max_budget_usd" and cap is not None:
            result.budget_stop = stop_of(cap, (0.0 if cap.key == "run" else cap.spent) + cost)

    def record(self, req: AgentRequest, meter: RunMeter, agent_run_id: int | None, session_id: str) -> float:
        """Write the run's ledger rows from the gateway's meter (once per run); the run's cost."""
        run = ledger.RunInfo(
            agent_run_id=agent_run_id, task_id=req.task_id, workflow_run_id=req.workflow_run_id,
            repo=req.repo_name, agent_type=req.agent.agent_type, session_id=session_id,
            day=ledger.today(self.cfg.budgets.timezone), model=req.agent.model or "", backend=req.agent.backend,
        )  # fmt: skip
        return ledger.record_metered(self.engine, meter.models, run)

    async def warn(self, req: AgentRequest, before: list[Budget], cost: float) -> None:
        """Post a board warning for each budget this run (which cost `cost`) took past 80% of its limit.

        Every scope a run belongs to grew by its cost; a run's own budget starts from nothing.
        """
        if self.board is None:
            return
        for b in before:
            start = 0.0 if b.key == "run" else b.spent
            text = warning(Budget(b.key, b.label, b.limit, start + cost), start)
            if text:
                await self.board.publish(
                    sender="factory", content=text, message_type="status", recipient="user",
                    task_id=req.task_id, workflow_run_id=req.workflow_run_id,
                )  # fmt: skip


def cost_line(meter: RunMeter, hint: Any) -> str:
    """The task log's line of what a run cost, the CLI's own figure beside it as the hint it is."""
    text = f"cost: ${meter.cost:.6f} metered by the model gateway over {meter.requests} requests"
    if meter.refused_for_budget:
        text += f", {meter.refused_for_budget} refused at the run's budget"
    if hint is None:
        return text
    shown = f"{hint:g}" if isinstance(hint, int | float) and not isinstance(hint, bool) else "a non-number"
    return f"{text} (the CLI reported {shown})"  # agent-writable: only ever a number here


def stop_of(b: Budget, spent_now: float) -> BudgetStop:
    """The wire form of the budget that stopped a run, `spent_now` spent against it."""
    return BudgetStop(key=b.key, label=b.label, limit=b.limit, spent=round(spent_now, 6))


class BudgetActivities:
    """The daily-budget hold of new tasks (register the bound method)."""

    def __init__(self, cfg: FactoryConfig, engine: Engine) -> None:
        self.keeper = BudgetKeeper(cfg, engine)
        self.cfg = cfg
        self.engine = engine

    @activity.defn
    def check_budget_hold(self, inp: HoldCheck) -> HoldState:
        """Whether a daily budget keeps this task queued; the reason goes on the task's note, and off again."""
        items = [b for b in self.keeper.current(inp.task_id, None, inp.repo, inp.agent_type) if b.key in DAILY]
        b = held_by(items)
        reason = hold_reason(b, self.cfg.budgets.timezone) if b is not None else ""
        with session_scope(self.engine) as s:
            task = s.get(Task, inp.task_id)
            if task is not None:
                was = task.note or ""
                if reason and was != reason:
                    task.note = reason
                elif not reason and was.startswith(HOLD_PREFIX):
                    task.note = None
                if task.note != (was or None):
                    s.add(task)
                    s.commit()
                    if reason and not was.startswith(HOLD_PREFIX):
                        add_log(self.engine, inp.task_id, "event", reason)
        return HoldState(held=b is not None, reason=reason)
