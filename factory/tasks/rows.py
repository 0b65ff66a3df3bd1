"""The task service's writes: the only place outside the activities' progress updates that sets a task's status.

Blocking database calls: the service runs them in a thread (`asyncio.to_thread`), so a SQLite lock
wait never holds up the event loop the API and the worker share under `factory up`.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col

from factory.domain.lifecycle import Conflict, NotFound
from factory.domain.text import clip
from factory.store.tables import (
    FINISHED,
    RUN_FINISHED,
    Task,
    TaskStatus,
    WorkflowRun,
    WorkflowStatus,
    session_scope,
    utcnow,
)
from factory.store.views import pending_question

RETRYABLE = (TaskStatus.failed, TaskStatus.cancelled)
RUN_ACTIVE = (WorkflowStatus.pending, WorkflowStatus.running)


def get_task(engine: Engine, task_id: int) -> Task:
    """The task row, or NotFound."""
    with session_scope(engine) as s:
        task = s.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


def question_pending(engine: Engine, task_id: int) -> bool:
    """Whether the task's row waits on a question (the question activity wrote it)."""
    with session_scope(engine) as s:
        task = s.get(Task, task_id)
        return task is not None and pending_question(s, task) is not None


def get_run(engine: Engine, run_id: int) -> WorkflowRun:
    """The workflow run's row, or NotFound."""
    with session_scope(engine) as s:
        run = s.get(WorkflowRun, run_id)
    if run is None:
        raise NotFound(f"workflow {run_id} not found")
    return run


def mark_task_cancelled(engine: Engine, task_id: int) -> None:
    """A task whose workflow never started: the row says cancelled (a finished one keeps its end)."""
    with engine.begin() as conn:
        conn.execute(
            update(Task)
            .where(col(Task.id) == task_id, col(Task.status).not_in(list(FINISHED)))
            .values(status=TaskStatus.cancelled, finished_at=utcnow())
        )


def mark_run_cancelled(engine: Engine, run_id: int) -> None:
    """A workflow run that never started: its row says cancelled."""
    with engine.begin() as conn:
        conn.execute(
            update(WorkflowRun)
            .where(col(WorkflowRun.id) == run_id, col(WorkflowRun.status).in_(list(RUN_ACTIVE)))
            .values(status=WorkflowStatus.cancelled, finished_at=utcnow())
        )


def mark_run_failed(engine: Engine, run_id: int, error: str) -> None:
    """A workflow run whose start failed."""
    with engine.begin() as conn:
        conn.execute(
            update(WorkflowRun)
            .where(col(WorkflowRun.id) == run_id, col(WorkflowRun.status).not_in(list(RUN_FINISHED)))
            .values(status=WorkflowStatus.failed, error=clip(error, 2000), finished_at=utcnow())
        )


def reopen(engine: Engine, task_id: int) -> Task:
    """Put a failed or cancelled task back to queued, in one conditional UPDATE: of two retries at once, one wins."""
    with engine.begin() as conn:
        done = conn.execute(
            update(Task)
            .where(col(Task.id) == task_id, col(Task.status).in_(list(RETRYABLE)))
            .values(status=TaskStatus.queued, error=None, finished_at=None)
        )
    if done.rowcount != 1:
        raise Conflict(f"task {task_id} is already being retried")
    return get_task(engine, task_id)


def restore(engine: Engine, before: Task) -> None:
    """Undo `reopen` when the new run could not start (only while the row is still queued)."""
    with engine.begin() as conn:
        conn.execute(
            update(Task)
            .where(col(Task.id) == before.id, col(Task.status) == TaskStatus.queued)
            .values(status=before.status, error=before.error, finished_at=before.finished_at)
        )
