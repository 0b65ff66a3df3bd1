"""Writes to the human-facing tables, shared by activities and the API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select

from factory.contracts import TaskUpdate
from factory.domain.redact import scrub
from factory.store.tables import Message, Task, TaskLog, TaskStatus, session_scope, utcnow

log = logging.getLogger("factory.store.writes")

MAX_LOG_CHARS = 4000


def update_task(engine: Engine, upd: TaskUpdate) -> Task | None:
    """Apply a partial update; never moves a finished task back to a running state."""
    with session_scope(engine) as s:
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
            terminal = {TaskStatus.done, TaskStatus.failed, TaskStatus.cancelled}
            if task.status not in terminal or status in terminal:
                task.status = status
            if status == TaskStatus.in_progress and task.started_at is None:
                task.started_at = utcnow()
        if upd.finished and task.finished_at is None:
            task.finished_at = utcnow()
        s.add(task)
        s.commit()
        return task


def add_log(engine: Engine, task_id: int, kind: str, content: str, attempt: int = 1, secrets: list[str] = ()) -> None:
    content = scrub(content, secrets)
    if len(content) > MAX_LOG_CHARS:
        content = content[:MAX_LOG_CHARS] + f"… [{len(content) - MAX_LOG_CHARS} more characters]"
    with session_scope(engine) as s:
        s.add(TaskLog(task_id=task_id, kind=kind, content=content, attempt=attempt))
        s.commit()


MessageListener = Callable[[Message], Awaitable[None]]


class Board:
    """The message board: stores messages and tells listeners (Telegram forwarding)."""

    def __init__(self, engine: Engine, enabled: bool = True, secrets: list[str] = ()):
        self.engine = engine
        self.enabled = enabled
        self.secrets = list(secrets)
        self.listeners: list[MessageListener] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def post(
        self,
        sender: str,
        content: str,
        message_type: str = "info",
        recipient: str | None = None,
        task_id: int | None = None,
        workflow_run_id: int | None = None,
        reply_to: int | None = None,
    ) -> Message | None:
        if not self.enabled:
            return None
        msg = Message(
            sender=sender,
            content=scrub(content, self.secrets),
            message_type=message_type if message_type in ("info", "question", "handoff", "status", "error") else "info",
            recipient=recipient,
            task_id=task_id,
            workflow_run_id=workflow_run_id,
            reply_to=reply_to,
        )
        with session_scope(self.engine) as s:
            s.add(msg)
            s.commit()
            s.refresh(msg)
        self._notify(msg)
        return msg

    def _notify(self, msg: Message) -> None:
        if not self.listeners:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for listener in self.listeners:
            t = loop.create_task(self._safe(listener, msg))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _safe(listener: MessageListener, msg: Message) -> None:
        try:
            await listener(msg)
        except Exception as exc:  # a listener (Telegram) never breaks posting
            log.warning("message listener failed: %s", exc)

    def inbox(self, agent_type: str, task_id: int | None, workflow_run_id: int | None) -> list[Message]:
        """Undelivered messages to this agent type in the same workflow (or task), marked delivered."""
        if not self.enabled:
            return []
        with session_scope(self.engine) as s:
            q = select(Message).where(Message.recipient == agent_type, Message.delivered_at.is_(None))
            if workflow_run_id is not None:
                q = q.where(Message.workflow_run_id == workflow_run_id)
            elif task_id is not None:
                q = q.where(Message.task_id == task_id)
            else:
                return []
            msgs = list(s.exec(q.order_by(Message.id)))
            for m in msgs:
                m.delivered_at = utcnow()
                s.add(m)
            s.commit()
            return msgs
