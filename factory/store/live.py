"""What the dashboard's live stream and board read: cards (one per single task, one per workflow run
with its steps inside), a task's round (the task and the follow-ups started from it), and the rows
after a cursor. Plain reads: the stream polls them, so nothing is held in memory that could drop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, or_, select

from factory.store.tables import (
    FINISHED,
    CostEntry,
    Message,
    Question,
    Task,
    TaskLog,
    TaskStatus,
    WorkflowRun,
)

# What a browser gets of a row: named here (as api/schemas.py's TaskPublic and RunSummary do), so a
# column added later is not sent until someone decides it may be.
TASK_FIELDS = (
    "id", "title", "description", "repo", "agent_type", "status", "branch", "base_branch", "pr_url", "pr_number",
    "pr_state", "error", "result", "note", "session_id", "cost_usd", "num_turns", "host", "workflow_run_id",
    "workflow_step", "iteration", "parent_task_id", "plane_issue_id", "preview_url", "changed_files", "created_at",
    "started_at", "finished_at",
)  # fmt: skip
RUN_FIELDS = (
    "id", "name", "title", "description", "repo", "status", "current_step", "current_agent", "iteration", "branch",
    "pr_url", "pr_number", "pr_state", "approved", "note", "error", "plane_issue_id", "created_at", "started_at",
    "finished_at",
)  # fmt: skip
BOARD_WINDOW = 300  # the newest tasks the board looks at (older ones are found by the text filter)


@dataclass(frozen=True)
class BoardFilter:
    status: str | None = None
    repo: str | None = None
    agent: str | None = None
    text: str | None = None


def _pending(s: Session, ids: list[int]) -> dict[int, Question]:
    if not ids:
        return {}
    rows = s.exec(select(Question).where(col(Question.task_id).in_(ids), Question.status == "pending"))
    return {q.task_id: q for q in rows}


def ledger_totals(s: Session, ids: list[int]) -> dict[int, float]:
    """What the ledger says each task spent: a killed run's cost is there though its row says 0."""
    if not ids:
        return {}
    rows = s.exec(
        select(CostEntry.task_id, func.sum(CostEntry.cost_usd)).where(col(CostEntry.task_id).in_(ids))
        .group_by(CostEntry.task_id)
    )  # fmt: skip
    return {int(t): float(c or 0) for t, c in rows}


def tool_turns(s: Session, ids: list[int]) -> dict[int, int]:
    """Assistant turns that used a tool, counted from the log: a killed run never wrote num_turns."""
    if not ids:
        return {}
    rows = s.exec(
        select(TaskLog.task_id, func.count()).where(col(TaskLog.task_id).in_(ids), TaskLog.kind == "tool_use")
        .group_by(TaskLog.task_id)
    )  # fmt: skip
    return {int(t): int(n) for t, n in rows}


def task_dict(task: Task, question: Question | None, ledger: float | None = None, tools: int = 0) -> dict[str, Any]:
    """A task as the dashboard shows it: its row, the pending question, and the ledger's cost."""
    d = task.model_dump(mode="json", include=set(TASK_FIELDS))
    d["pending_question"] = (
        {
            "id": question.id,
            "text": question.text,
            "options": question.options,
            "asked_at": question.asked_at.isoformat(),
        }
        if question and task.status == TaskStatus.awaiting_input
        else None
    )
    d["ledger_cost_usd"] = round(ledger, 6) if ledger is not None else None
    d["tool_calls"] = tools
    d["allowed"] = allowed(task)
    return d


def allowed(task: Task) -> list[str]:
    """What the dashboard offers for this task: the same rules as factory/tasks/service.py's 409s."""
    out = []
    if task.status == TaskStatus.queued:
        out.append("run")
    if task.status not in FINISHED:
        out.append("cancel")
    if task.status in (TaskStatus.failed, TaskStatus.cancelled) and task.workflow_run_id is None:
        out.append("retry")
    if task.status in FINISHED and task.branch:
        out.append("handoff")
    if task.workflow_run_id is None and task.status in FINISHED | {TaskStatus.in_progress, TaskStatus.awaiting_input}:
        out.append("follow_up")
    return out


def _matches(f: BoardFilter, status: str, repo: str, agents: set[str], hay: str) -> bool:
    if f.status and status != f.status:
        return False
    if f.repo and repo != f.repo:
        return False
    if f.agent and f.agent not in agents:
        return False
    return not f.text or f.text.lower() in hay.lower()


_RUN_STATUS = {"pending": "queued", "running": "in_progress", "completed": "done"}


def board_cards(engine: Engine, f: BoardFilter) -> list[dict[str, Any]]:
    """The board's cards, newest first: `task-<id>` for a single task, `run-<id>` for a workflow run
    (its status mapped onto the task columns; a step waiting on a question puts it in that column)."""
    with Session(engine) as s:
        tasks = list(s.exec(select(Task).order_by(col(Task.id).desc()).limit(BOARD_WINDOW)))
        ids = [t.id for t in tasks]
        pending = _pending(s, ids)
        costs = ledger_totals(s, ids)
        run_ids = sorted({t.workflow_run_id for t in tasks if t.workflow_run_id})
        runs = {r.id: r for r in s.exec(select(WorkflowRun).where(col(WorkflowRun.id).in_(run_ids)))} if run_ids else {}
    cards: list[dict[str, Any]] = []
    steps: dict[int, list[dict[str, Any]]] = {}
    for t in tasks:
        d = task_dict(t, pending.get(t.id), costs.get(t.id))
        if t.workflow_run_id and t.workflow_run_id in runs:
            steps.setdefault(t.workflow_run_id, []).append(d)
            continue
        hay = f"#{t.id} {t.title} {t.description} {t.branch or ''}"
        if _matches(f, t.status, t.repo, {t.agent_type}, hay):
            cards.append({"key": f"task-{t.id}", "kind": "task", "sort": t.id, "task": d})
    for rid, mine in steps.items():
        r = runs[rid]
        mine.sort(key=lambda d: d["id"])
        waiting = next((d for d in mine if d["pending_question"]), None)
        status = "awaiting_input" if waiting else _RUN_STATUS.get(r.status, r.status)
        hay = f"#{r.id} {r.title} {r.description} {r.branch or ''} {r.name}"
        if _matches(f, status, r.repo, {d["agent_type"] for d in mine}, hay):
            run = r.model_dump(mode="json", include=set(RUN_FIELDS))
            run["column"] = status
            run["cost_usd"] = round(sum((d["ledger_cost_usd"] or d["cost_usd"] or 0) for d in mine), 6)
            cards.append({"key": f"run-{rid}", "kind": "run", "sort": mine[-1]["id"], "run": run, "steps": mine})
    cards.sort(key=lambda c: -c["sort"])
    return cards


def round_state(engine: Engine, task_id: int) -> tuple[list[dict[str, Any]], list[Question]]:
    """A task's round as its page shows it (the task and the follow-up rounds started from it, oldest first)
    and every question those tasks asked, on one session: a live page reads both every period."""
    with Session(engine) as s:
        rows = list(
            s.exec(select(Task).where(or_(Task.id == task_id, Task.parent_task_id == task_id)).order_by(col(Task.id)))
        )
        ids = [t.id for t in rows]
        questions = (
            list(s.exec(select(Question).where(col(Question.task_id).in_(ids)).order_by(col(Question.id))))
            if ids else []
        )  # fmt: skip
        costs, tools = ledger_totals(s, ids), tool_turns(s, ids)
    pending = {q.task_id: q for q in questions if q.status == "pending"}  # oldest first: the newest one stays
    return [task_dict(t, pending.get(t.id), costs.get(t.id), tools.get(t.id, 0)) for t in rows], questions


def round_tasks(engine: Engine, task_id: int) -> list[dict[str, Any]]:
    """A task and the follow-up rounds started from it (children whose parent is it), oldest first."""
    return round_state(engine, task_id)[0]


def rows_after(
    engine: Engine, task_ids: list[int], log_cursor: int, msg_cursor: int, limit: int
) -> tuple[list[TaskLog], list[Message]]:
    """The tasks' log lines and messages after the cursors, on one session (a live stream's wake)."""
    if not task_ids:
        return [], []
    with Session(engine) as s:
        logs = select(TaskLog).where(col(TaskLog.task_id).in_(task_ids), col(TaskLog.id) > log_cursor)
        msgs = select(Message).where(col(Message.task_id).in_(task_ids), col(Message.id) > msg_cursor)
        return (list(s.exec(logs.order_by(col(TaskLog.id)).limit(limit))),
                list(s.exec(msgs.order_by(col(Message.id)).limit(limit))))  # fmt: skip
