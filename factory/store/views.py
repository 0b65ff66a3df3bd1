"""What the API reads: a task's pending question, a run's steps, message filters, threads and targets.

Plain reads over the tables (sync, for a worker thread or a plain `def` route); the API turns the
rows into its response models. `NotFound` names what is missing (-> 404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, or_, select

from factory.domain.lifecycle import NotFound
from factory.store.tables import Handoff, Message, Question, Task, TaskStatus, WorkflowRun, session_scope

SUMMARY_CHARS = 2000  # a run step's summary as the run view shows it


def get_task(session: Session, task_id: int) -> Task:
    """The task, or NotFound."""
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


_TASK_ID = select(Task.id).where(Task.id == bindparam("task_id"))


def require_task(session: Session, task_id: int) -> None:
    """NotFound unless the task exists (reads only its id, with a statement built once: cheaper than the row)."""
    if session.exec(_TASK_ID, params={"task_id": task_id}).first() is None:
        raise NotFound(f"task {task_id} not found")


def get_run(session: Session, run_id: int) -> WorkflowRun:
    """The workflow run, or NotFound."""
    run = session.get(WorkflowRun, run_id)
    if run is None:
        raise NotFound(f"workflow {run_id} not found")
    return run


def get_message(session: Session, message_id: int) -> Message:
    """The message, or NotFound."""
    msg = session.get(Message, message_id)
    if msg is None:
        raise NotFound(f"message {message_id} not found")
    return msg


def pending_question(session: Session, task: Task) -> Question | None:
    """The question the task waits on (only while it is `awaiting_input`)."""
    if task.status != TaskStatus.awaiting_input:
        return None
    return session.exec(
        select(Question).where(Question.task_id == task.id, Question.status == "pending").order_by(Question.id.desc())
    ).first()


def first_waiting(session: Session, cond: Any) -> tuple[Task, Question] | None:
    """The newest task matching `cond` that waits on a question, with that question."""
    waiting = select(Task).where(Task.status == TaskStatus.awaiting_input, cond).order_by(Task.id.desc())
    for task in session.exec(waiting).all():
        question = pending_question(session, task)
        if question is not None:
            return task, question
    return None


@dataclass
class RunStep:
    """One agent step of a workflow run, with the handoff it left (if any)."""

    task: Task
    handoff: Handoff | None


@dataclass
class RunDetail:
    """A run's steps so far and the question one of them waits on."""

    steps: list[RunStep]
    question: Question | None


def run_detail(session: Session, run: WorkflowRun) -> RunDetail:
    """The run's step tasks in order, each with its handoff, and any pending question."""
    tasks = list(session.exec(select(Task).where(Task.workflow_run_id == run.id).order_by(Task.id)))
    handoffs = {h.from_task_id: h for h in session.exec(select(Handoff).where(Handoff.workflow_run_id == run.id))}
    question = None
    for t in tasks:
        question = pending_question(session, t) or question
    return RunDetail([RunStep(t, handoffs.get(t.id)) for t in tasks], question)


@dataclass
class MessageFilter:
    """Which board messages a list or a stream shows."""

    task_id: int | None = None
    workflow_id: int | None = None
    message_type: str | None = None
    agent: str | None = None  # sender or recipient
    search: str | None = None  # a content substring, any case

    def apply(self, q: Any) -> Any:
        """`q` narrowed to the messages this filter lets through."""
        if self.task_id is not None:
            q = q.where(Message.task_id == self.task_id)
        if self.workflow_id is not None:
            q = q.where(Message.workflow_run_id == self.workflow_id)
        if self.message_type:
            q = q.where(Message.message_type == self.message_type)
        if self.agent:
            q = q.where(or_(Message.sender == self.agent, Message.recipient == self.agent))
        if self.search and self.search.strip():
            q = q.where(func.lower(Message.content).contains(self.search.strip().lower(), autoescape=True))
        return q


def list_messages(session: Session, f: MessageFilter, before: int | None, limit: int) -> list[Message]:
    """Messages newest first, below the `before` id when given."""
    q = f.apply(select(Message))
    if before is not None:
        q = q.where(Message.id < before)
    return list(session.exec(q.order_by(Message.id.desc()).limit(limit)))


def messages_after(engine: Engine, f: MessageFilter, cursor: int, limit: int) -> list[Message]:
    """Up to `limit` messages with an id above `cursor`, oldest first (a stream's next batch)."""
    with session_scope(engine) as s:
        q = f.apply(select(Message).where(Message.id > cursor))
        return list(s.exec(q.order_by(Message.id).limit(limit)))


def last_message_id(engine: Engine) -> int:
    """The newest message id (0 on an empty board)."""
    with session_scope(engine) as s:
        return s.exec(select(func.max(Message.id))).one() or 0


def message_target(
    session: Session, task_id: int | None, workflow_id: int | None, reply_to: int | None
) -> tuple[int | None, int | None]:
    """The (task, workflow run) a new message belongs to: a reply takes its thread's, a task its run's.

    Raises:
        NotFound: the message replied to, the task or the workflow run does not exist.
    """
    if reply_to is not None:
        parent = get_message(session, reply_to)
        task_id = task_id if task_id is not None else parent.task_id
        workflow_id = workflow_id if workflow_id is not None else parent.workflow_run_id
    if task_id is not None:
        task = get_task(session, task_id)
        if workflow_id is None:  # so a message to an agent type reaches the task's workflow
            workflow_id = task.workflow_run_id
    if workflow_id is not None:
        get_run(session, workflow_id)
    return task_id, workflow_id


def thread(session: Session, message_id: int) -> list[Message]:
    """The whole thread a message belongs to: its root, then every reply, oldest first."""
    msg = get_message(session, message_id)
    seen = {msg.id}
    root = msg
    while root.reply_to is not None:
        parent = session.get(Message, root.reply_to)
        if parent is None or parent.id in seen:
            break
        seen.add(parent.id)
        root = parent
    found = {root.id: root}
    frontier = [root.id]
    while frontier:
        replies = list(session.exec(select(Message).where(Message.reply_to.in_(frontier))))
        frontier = [r.id for r in replies if r.id not in found]
        found.update({r.id: r for r in replies})
    return [found[i] for i in sorted(found)]
