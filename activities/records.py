"""Record-keeping activities: task rows, questions, and task events for people.

Events go to the message board here; Telegram and Plane each get their own
`send_notification` activity with its own retries, so a slow or failing service
never delays or fails a task.

The database activities are plain `def`: the worker runs them on its thread-pool executor
(`activity_executor`), so a SQLite lock wait never stalls the event loop that heartbeats.

Activities that insert rows (`record_question`, `publish_event`) key each write by the workflow
run and the activity id: a retried attempt (or a local activity replayed after a lost workflow
task) finds the first attempt's row and returns it instead of writing a second one.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from factory.contracts import (  # noqa: F401 (the wire forms live in factory.contracts)
    AnswerRecord,
    NotifyInput,
    PendingQuestion,
    QuestionInput,
    TaskEvent,
    TaskUpdate,
    WorkflowRunUpdate,
)
from factory.store import ledger
from factory.store.board import Board
from factory.store.kv import first_write, mark_written
from factory.store.tables import FINISHED, Question, Task, TaskStatus, WorkflowRun, session_scope, utcnow
from factory.store.writes import add_log, update_task


class Notifier(Protocol):
    """A channel people hear from (Telegram, Plane)."""

    name: str

    def wants(self, event: TaskEvent) -> bool: ...

    async def send(self, event: TaskEvent) -> None: ...


class RecordActivities:
    """Task, question and workflow-run rows, board events and notifications (register the bound methods)."""

    def __init__(self, engine: Engine, board: Board, notifiers: list[Notifier] | None = None):
        self.engine = engine
        self.board = board
        self.notifiers = {n.name: n for n in (notifiers or [])}

    @activity.defn
    def update_task(self, upd: TaskUpdate) -> None:
        """Apply a partial update to a task row."""
        update_task(self.engine, upd)

    @activity.defn
    def update_workflow_run(self, upd: WorkflowRunUpdate) -> None:
        """Apply a partial update to a workflow run row."""
        with session_scope(self.engine) as s:
            run = s.get(WorkflowRun, upd.run_id)
            if run is None:
                return
            for k in ("status", "current_step", "current_agent", "iteration", "branch", "pr_url", "pr_number"):
                v = getattr(upd, k)
                if v is not None:
                    setattr(run, k, v)
            for k in ("approved", "note", "error"):
                v = getattr(upd, k)
                if v is not None:
                    setattr(run, k, v)
            if upd.status == "running" and run.started_at is None:
                run.started_at = utcnow()
            if upd.finished and run.finished_at is None:
                run.finished_at = utcnow()
            s.add(run)
            s.commit()

    @activity.defn
    def record_question(self, inp: QuestionInput) -> PendingQuestion:
        """Store the agent's question and mark the task awaiting_input; a retry returns the first row."""
        key = write_key()
        with session_scope(self.engine) as s:
            earlier = _earlier_question(s, key)
            if earlier is not None:
                return _pending(earlier)
            q = Question(task_id=inp.task_id, workflow_run_id=inp.workflow_run_id, text=inp.text, options=inp.options)
            s.add(q)
            s.flush()
            assert q.id is not None
            mark_written(s, key, q.id)
            task = s.get(Task, inp.task_id)
            if task is not None and task.status not in FINISHED:
                task.status = TaskStatus.awaiting_input
                s.add(task)
            try:
                s.commit()
            except IntegrityError:  # an earlier attempt, still running, committed first
                s.rollback()
                earlier = _earlier_question(s, key)
                if earlier is None:
                    raise
                return _pending(earlier)
            s.refresh(q)
        add_log(self.engine, inp.task_id, "event", f"question #{q.id}: {inp.text}")
        return _pending(q)

    @activity.defn
    def record_answer(self, inp: AnswerRecord) -> None:
        """Store the answer and put the task back in progress."""
        with session_scope(self.engine) as s:
            q = s.get(Question, inp.question_id)
            if q is None:
                return
            q.answer = inp.answer
            q.answered_by = inp.answered_by
            q.answered_at = utcnow()
            q.status = "answered"
            s.add(q)
            task = s.get(Task, q.task_id)
            if task is not None and task.status == TaskStatus.awaiting_input:
                task.status = TaskStatus.in_progress
                s.add(task)
            s.commit()
        add_log(self.engine, q.task_id, "event", f"answer to question #{inp.question_id} from {inp.answered_by}")

    @activity.defn
    def close_question(self, inp: AnswerRecord) -> None:
        """Mark an unanswered question expired or cancelled (answer holds the new status)."""
        with session_scope(self.engine) as s:
            q = s.get(Question, inp.question_id)
            if q is not None and q.status == "pending":
                q.status = inp.answer
                s.add(q)
                s.commit()

    @activity.defn
    async def publish_event(self, event: TaskEvent) -> list[str]:
        """Post the event on the board; return the notification channels that want it."""
        text, mtype = _board_text(event)
        if text:
            await self.board.publish(
                sender="factory",
                content=text,
                message_type=mtype,
                recipient="user" if event.kind == "question" else None,
                task_id=event.task_id,
                workflow_run_id=event.workflow_run_id,
                once_key=write_key(),
            )
        return [name for name, n in self.notifiers.items() if n.wants(event)]

    async def announce(self, upd: TaskUpdate, event: TaskEvent) -> list[str]:
        """A task's start, told by the step that made its worktree (`PrepareInput.started`): its row, then its
        event on the board; the channels that want the event. As `Notifications.emit`, a board that cannot be
        written holds nothing back: no channel is told then."""
        await asyncio.to_thread(update_task, self.engine, upd)
        try:
            return await self.publish_event(event)
        except Exception as exc:
            activity.logger.warning("could not post the %s event of task %s: %s", event.kind, event.task_id, exc)
            return []

    @activity.defn
    async def send_notification(self, inp: NotifyInput) -> None:
        """Send one event to one channel; failures retry by the caller's policy."""
        notifier = self.notifiers.get(inp.channel)
        if notifier is None:
            return
        event = inp.event
        if event.kind in ("completed", "failed") and event.cost_usd is None:  # what it cost, from the ledger
            event.cost_usd = await asyncio.to_thread(_cost_of, self.engine, event)
        try:
            await notifier.send(inp.event)
        except ApplicationError:
            raise
        except Exception as exc:
            raise ApplicationError(f"{inp.channel}: {exc}", type="NotifyError") from exc


def _cost_of(engine: Engine, e: TaskEvent) -> float:
    if e.task_id is not None:
        return ledger.task_total(engine, e.task_id)
    return ledger.workflow_total(engine, e.workflow_run_id) if e.workflow_run_id is not None else 0.0


def write_key() -> str | None:
    """This activity's write key: workflow id, run id and activity id, the same for every attempt.

    The run id is part of it because activity ids restart at 1 in a continued-as-new run. None
    outside an activity (a direct call writes as it always did).
    """
    try:
        info = activity.info()
    except RuntimeError:
        return None
    return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"


def _earlier_question(s: Session, key: str | None) -> Question | None:
    qid = first_write(s, key)
    return s.get(Question, qid) if qid is not None else None


def _pending(q: Question) -> PendingQuestion:
    assert q.id is not None
    return PendingQuestion(id=q.id, text=q.text, options=q.options, asked_at=q.asked_at.isoformat())


def _board_text(e: TaskEvent) -> tuple[str, str]:
    who = f"task #{e.task_id}" if e.task_id is not None else f"workflow #{e.workflow_run_id}"
    if e.kind == "started":
        return f"{who} started: {e.title} (branch {e.branch})", "status"
    if e.kind == "completed":
        if e.pr_url:
            return f"{who} done: {e.title} — {e.pr_url}", "status"
        return f"{who} done: {e.title} — {e.summary or 'no changes, no PR'}", "status"
    if e.kind == "failed":
        return f"{who} failed: {e.title} — {e.error}", "error"
    if e.kind == "cancelled":
        return f"{who} cancelled: {e.title}", "status"
    if e.kind == "question":
        opts = f" (options: {', '.join(e.options)})" if e.options else ""
        return f"{who} asks: {e.question}{opts}", "question"
    if e.kind == "workflow_iteration":
        return f"{who} iteration {e.iteration}: {e.summary or ''}".rstrip(": "), "status"
    if e.kind == "preview":
        return f"Preview for {e.title}: {e.url}", "info"
    return "", "info"
