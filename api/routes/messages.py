"""The message board: post, list with filters, threads, and a live server-sent event stream.

The stream reads the database with an id cursor (never an in-memory fan-out), so messages
that a worker in another process stores arrive too, a slow client catches up, and a
reconnect resumes after `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, or_, select
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import BoardDep, SessionDep
from factory.store.tables import Message, Task, WorkflowRun, session_scope

router = APIRouter(prefix="/api/messages", tags=["messages"])

MessageType = Literal["info", "question", "handoff", "status", "error"]
POLL_SECONDS = 0.25  # how often an open stream looks for new rows: the board's latency bound
PING_SECONDS = 15.0  # keep-alive comments, so proxies keep an idle stream open
STREAM_BATCH = 200


class MessageCreate(BaseModel):
    sender: str = Field(default="user", min_length=1, max_length=100)
    to: str | None = Field(default=None, max_length=100)
    content: str = Field(max_length=50_000)
    message_type: MessageType = "info"
    task_id: int | None = None
    workflow_id: int | None = None
    reply_to: int | None = None

    @field_validator("content")
    @classmethod
    def _content(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("content must not be empty")
        return v

    @field_validator("sender", "to")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return v.strip() or None if v is not None else None


def _aware(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).isoformat()


def message_public(m: Message) -> dict[str, Any]:
    """A message as the API shows it (the seed's names: `to`, `workflow_id`)."""
    return {
        "id": m.id,
        "sender": m.sender,
        "to": m.recipient,
        "content": m.content,
        "message_type": m.message_type,
        "task_id": m.task_id,
        "workflow_id": m.workflow_run_id,
        "reply_to": m.reply_to,
        "created_at": _aware(m.created_at),
        "delivered_at": _aware(m.delivered_at),
    }


class Filters(BaseModel):
    task_id: int | None = None
    workflow_id: int | None = None
    message_type: MessageType | None = None
    agent: str | None = None
    search: str | None = None

    def apply(self, q: Any) -> Any:
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


def _filters(
    task_id: int | None, workflow_id: int | None, message_type: str | None, agent: str | None, search: str | None
) -> Filters:
    return Filters(task_id=task_id, workflow_id=workflow_id, message_type=message_type, agent=agent, search=search)


def _get_or_404(session: Session, message_id: int) -> Message:
    msg = session.get(Message, message_id)
    if msg is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"message {message_id} not found")
    return msg


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_message(body: MessageCreate, session: SessionDep, board: BoardDep) -> dict[str, Any]:
    """Post a message (a person or a tool); a reply takes its thread's task, a task its workflow."""
    if not board.enabled:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "the message board is disabled (message_board.enabled: false in config.yml)"
        )
    task_id, workflow_id = body.task_id, body.workflow_id
    if body.reply_to is not None:
        parent = _get_or_404(session, body.reply_to)
        task_id = task_id if task_id is not None else parent.task_id
        workflow_id = workflow_id if workflow_id is not None else parent.workflow_run_id
    if task_id is not None:
        task = session.get(Task, task_id)
        if task is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} not found")
        if workflow_id is None:  # so a message to an agent type reaches the task's workflow
            workflow_id = task.workflow_run_id
    if workflow_id is not None and session.get(WorkflowRun, workflow_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"workflow {workflow_id} not found")
    msg = board.post(
        sender=body.sender or "user",
        content=body.content,
        message_type=body.message_type,
        recipient=body.to,
        task_id=task_id,
        workflow_run_id=workflow_id,
        reply_to=body.reply_to,
    )
    if msg is None:  # disabled between the check and the post
        raise HTTPException(status.HTTP_409_CONFLICT, "the message board is disabled")
    return message_public(msg)


@router.get("")
def list_messages(
    session: SessionDep,
    task_id: int | None = None,
    workflow_id: int | None = None,
    message_type: MessageType | None = None,
    agent: Annotated[str | None, Query(max_length=100, description="sender or recipient")] = None,
    search: Annotated[str | None, Query(max_length=500, description="content substring, any case")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, description="only messages with an id below this (paging)")] = None,
) -> list[dict[str, Any]]:
    """Messages, newest first, with filters and an id cursor (`before`)."""
    f = _filters(task_id, workflow_id, message_type, agent, search)
    q = f.apply(select(Message))
    if before is not None:
        q = q.where(Message.id < before)
    return [message_public(m) for m in session.exec(q.order_by(Message.id.desc()).limit(limit))]


async def _stream(request: Request, engine: Engine, f: Filters, cursor: int) -> AsyncIterator[Any]:
    # A first comment tells the client the stream is open (and flushes proxy buffers).
    yield ServerSentEvent(comment="connected")
    while True:
        rows = await asyncio.to_thread(_newer, engine, f, cursor)
        for m in rows:
            cursor = m.id
            yield ServerSentEvent(data=json.dumps(message_public(m)), id=str(m.id), event="message")
        if len(rows) == STREAM_BATCH:
            continue  # catching up: no pause between batches
        # A client that goes away ends the stream inside EventSourceResponse; `stopping` is set
        # by `factory up` on shutdown, so an open board never holds the server up.
        if getattr(request.app.state, "stopping", False):
            return
        await asyncio.sleep(POLL_SECONDS)


def _newer(engine: Engine, f: Filters, cursor: int) -> list[Message]:
    with session_scope(engine) as s:
        q = f.apply(select(Message).where(Message.id > cursor))
        return list(s.exec(q.order_by(Message.id).limit(STREAM_BATCH)))


@router.get("/stream/sse")
async def stream_messages(
    request: Request,
    task_id: int | None = None,
    workflow_id: int | None = None,
    message_type: MessageType | None = None,
    agent: Annotated[str | None, Query(max_length=100)] = None,
    search: Annotated[str | None, Query(max_length=500)] = None,
    last_id: Annotated[int | None, Query(ge=0, description="resume after this id (if no Last-Event-ID)")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Server-sent events of new messages (`event: message`, `id` = message id), resumable."""
    engine: Engine = request.app.state.engine
    f = _filters(task_id, workflow_id, message_type, agent, search)
    cursor: int | None = None
    if last_event_id and last_event_id.strip().isdigit():
        cursor = int(last_event_id.strip())
    elif last_id is not None:
        cursor = last_id
    if cursor is None:  # a fresh client gets what is new from now on
        with session_scope(engine) as s:
            cursor = s.exec(select(func.max(Message.id))).one() or 0
    return EventSourceResponse(
        _stream(request, engine, f, cursor),
        ping=PING_SECONDS,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{message_id}")
def get_message(message_id: int, session: SessionDep) -> dict[str, Any]:
    """One message."""
    return message_public(_get_or_404(session, message_id))


@router.get("/{message_id}/thread")
def get_thread(message_id: int, session: SessionDep) -> list[dict[str, Any]]:
    """The whole thread the message belongs to: its root, then every reply, oldest first."""
    msg = _get_or_404(session, message_id)
    seen = {msg.id}
    root = msg
    while root.reply_to is not None:
        parent = session.get(Message, root.reply_to)
        if parent is None or parent.id in seen:
            break
        seen.add(parent.id)
        root = parent
    thread = {root.id: root}
    frontier = [root.id]
    while frontier:
        replies = list(session.exec(select(Message).where(Message.reply_to.in_(frontier))))
        frontier = [r.id for r in replies if r.id not in thread]
        thread.update({r.id: r for r in replies})
    return [message_public(thread[i]) for i in sorted(thread)]
