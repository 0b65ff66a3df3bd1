"""Budgets, pure: which limit is nearest, what is left, and the question a person answers when one is reached.

A budget is a limit in USD over one scope: one agent run (the template's `max_budget_usd`), the
task, its workflow run, its repo today, or everything today (`budgets` in config.yml). Before a
run, the one with the least left caps the run (`--max-budget-usd`); when it is used up, the task
asks whether to raise it. Days are calendar days in `budgets.timezone`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

KEYS = ("run", "task", "workflow", "repo_daily", "daily")
"""Every budget's key, from the narrowest scope to the widest."""

DAILY = frozenset({"repo_daily", "daily"})
"""The budgets that reset when the day rolls over: reaching one holds new runs instead of asking."""

WARN_SHARE = 0.8
"""The board gets a warning when spending passes this share of a budget."""

STOP_OPTION = "Stop"


@dataclass(frozen=True)
class Budget:
    """One limit and what has been spent against it."""

    key: str
    label: str
    limit: float
    spent: float

    @property
    def left(self) -> float:
        return max(0.0, self.limit - self.spent)


@dataclass(frozen=True)
class Decision:
    """A person's answer to a budget question: stop, or go on with `limit`."""

    stop: bool
    limit: float | None = None


def usd(amount: float) -> str:
    """A dollar amount as people read it: cents, or more digits for amounts under a dollar."""
    if amount >= 1 or amount == 0:
        return f"${amount:,.2f}"
    return "$" + f"{amount:.4f}".rstrip("0").rstrip(".")


def labels(agent_type: str, repo: str, timezone: str) -> dict[str, str]:
    """What each budget is, in the words of the question ("for <label>") and the config key behind it."""
    return {
        "run": f"one {agent_type} run (agent_templates.{agent_type}.max_budget_usd)",
        "task": "this task (budgets.per_task_usd)",
        "workflow": "this workflow run (budgets.per_workflow_usd)",
        "repo_daily": f"{repo} today, {timezone} (budgets.per_repo_daily_usd)",
        "daily": f"all of Factory today, {timezone} (budgets.daily_usd)",
    }


def budgets(limits: dict[str, float | None], spent: dict[str, float], names: dict[str, str]) -> list[Budget]:
    """The budgets that are set, in `KEYS` order; a missing `spent` entry counts as nothing spent."""
    return [
        Budget(key=k, label=names.get(k, k), limit=float(limit), spent=float(spent.get(k, 0.0)))
        for k in KEYS
        if (limit := limits.get(k)) is not None
    ]


def smallest(items: list[Budget]) -> Budget | None:
    """The budget with the least left (the narrowest scope on a tie), or None when none is set."""
    return min(items, key=lambda b: b.left, default=None)


def exhausted(items: list[Budget]) -> Budget | None:
    """A budget with nothing left (the narrowest first), or None."""
    return next((b for b in items if b.left <= 0), None)


def held_by(items: list[Budget]) -> Budget | None:
    """A daily budget with nothing left, which keeps new tasks queued until the day rolls over."""
    return next((b for b in items if b.key in DAILY and b.left <= 0), None)


def hold_reason(b: Budget, timezone: str) -> str:
    """The note of a task held queued by a daily budget."""
    return (
        f"held: daily budget reached, {usd(b.spent)} of {usd(b.limit)} for {b.label}; "
        f"the task starts when the day rolls over ({timezone})"
    )


def crossed(before: float, after: float, limit: float, share: float = WARN_SHARE) -> bool:
    """Whether spending went from below `share` of `limit` to at or above it."""
    return before < share * limit <= after


def warning(b: Budget, before: float) -> str | None:
    """The board's warning when this run took `b` past WARN_SHARE of its limit, else None."""
    if not crossed(before, b.spent, b.limit):
        return None
    return f"budget warning: {usd(b.spent)} of {usd(b.limit)} spent for {b.label} ({b.spent / b.limit:.0%})"


def day_of(now: datetime, timezone: str) -> str:
    """The calendar day (YYYY-MM-DD) of an aware `now` in `timezone`."""
    return now.astimezone(ZoneInfo(timezone)).date().isoformat()


def question(key: str, label: str, limit: float, spent: float) -> tuple[str, list[str]]:
    """The budget question and its options: raise by the same again, raise to an amount, stop."""
    text = f"Budget reached: {usd(spent)} of {usd(limit)} for {label}. Raise it?"
    options = [
        f"Raise by {usd(limit)} (to {usd(limit * 2)})",
        "Raise to a given amount (answer e.g. 'raise to $25')",
        STOP_OPTION,
    ]
    return text, options


_AMOUNT = re.compile(r"\$?\s*(\d+(?:\.\d+)?)")


def decide(answer: str, limit: float, spent: float) -> Decision | None:
    """Read an answer to the budget question; None when it is neither a stop nor a usable raise.

    "Raise by …" (the first option) adds the limit again, or the amount given; "raise to N" or a
    bare amount sets the limit to N, which must be above what was spent.
    """
    text = answer.strip().lower()
    if not text:
        return None
    if text.startswith("stop") or text in ("no", "n"):
        return Decision(stop=True)
    amounts = [float(m) for m in _AMOUNT.findall(text)]
    if text.startswith("raise by") or text in ("yes", "y", "raise", "same again"):
        by = limit if (not amounts or text.startswith(f"raise by {usd(limit)}".lower())) else amounts[0]
        new = limit + by
    elif amounts:
        new = amounts[0]
    else:
        return None
    if new <= spent or new <= 0:
        return None
    return Decision(stop=False, limit=round(new, 6))
