"""Writes to the task tables, shared by activities and the API: partial task updates and task logs.

Every function here is a blocking database call: from async code, run it in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from factory.contracts import TaskUpdate
from factory.domain.redact import scrub
from factory.domain.text import clip_noted
from factory.store.tables import FINISHED, AgentRun, Task, TaskLog, TaskStatus, session_scope, utcnow

Row = TypeVar("Row")

MAX_LOG_CHARS = 4000


def insert(engine: Engine, row: Row) -> Row:
    """Add one new row and return it with its id (blocking: call it in a thread from async code)."""
    with session_scope(engine) as s:
        s.add(row)
        s.commit()
        s.refresh(row)
        return row


def update_task(engine: Engine, upd: TaskUpdate) -> Task | None:
    """Apply a partial update; never moves a finished task back to a running state."""
    with session_scope(engine) as s:
        task = _apply(s, upd)
        if task is not None:
            s.commit()
        return task


def start_run(engine: Engine, upd: TaskUpdate, run: AgentRun) -> int:
    """`update_task(upd)` and a new agent run's row, in one transaction; the run's id."""
    with session_scope(engine) as s:
        _apply(s, upd)
        s.add(run)
        s.commit()
        s.refresh(run)
        assert run.id is not None
        return run.id


def _apply(s: Session, upd: TaskUpdate) -> Task | None:
    """`upd` applied to its task's row in session `s` (not committed); None when there is no such task."""
    task = s.get(Task, upd.task_id)
    if task is None:
        return None
    fields = {k: v for k, v in asdict(upd).items() if v is not None and k not in ("task_id", "finished")}
    add_cost = fields.pop("add_cost_usd", 0.0)
    add_turns = fields.pop("add_turns", 0)
    status = fields.pop("status", None)
    for k, v in fields.items():
        setattr(task, k, v)
    task.cost_usd = round((task.cost_usd or 0) + add_cost, 6)
    task.num_turns = (task.num_turns or 0) + add_turns
    if status:
        if task.status not in FINISHED or status in FINISHED:
            task.status = status
        if status == TaskStatus.in_progress and task.started_at is None:
            task.started_at = utcnow()
    if upd.finished and task.finished_at is None:
        task.finished_at = utcnow()
    s.add(task)
    return task


def add_log(
    engine: Engine, task_id: int, kind: str, content: str, attempt: int = 1, secrets: Sequence[str] = ()
) -> None:
    """Append a line to a task's log, secrets scrubbed and cut at MAX_LOG_CHARS."""
    add_logs(engine, task_id, [(kind, content)], attempt, secrets)


def add_logs(
    engine: Engine, task_id: int, entries: Sequence[tuple[str, str]], attempt: int = 1, secrets: Sequence[str] = ()
) -> None:
    """Append several `(kind, content)` lines to a task's log in one transaction, as `add_log` would."""
    if not entries:
        return
    with session_scope(engine) as s:
        for kind, content in entries:
            s.add(
                TaskLog(
                    task_id=task_id,
                    kind=kind,
                    content=clip_noted(scrub(content, secrets), MAX_LOG_CHARS),
                    attempt=attempt,
                )
            )
        s.commit()


def update_agent_run(engine: Engine, run_id: int, **values: Any) -> None:
    """Set fields of an agent run's row (pid, last output, end)."""
    with session_scope(engine) as s:
        run = s.get(AgentRun, run_id)
        if run is not None:
            for k, v in values.items():
                setattr(run, k, v)
            s.add(run)
            s.commit()
