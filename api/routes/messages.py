"""The message board: post, list with filters, threads, and a live server-sent event stream.

The stream reads the database with an id cursor (never an in-memory fan-out), so messages
that a worker in another process stores arrive too, a slow client catches up, and a
reconnect resumes after `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import WithJsonSchema
from sqlalchemy.engine import Engine
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.bodies import MAX_ID, MessageCreate, MessageType
from api.deps import BoardDep, EngineDep, IdPath, IdQuery, SessionDep
from api.errors import JSONRoute, responses
from api.schemas import MessagePublic
from factory.store import views
from factory.store.changes import ANY
from factory.store.views import MessageFilter

router = APIRouter(prefix="/api/messages", tags=["messages"], route_class=JSONRoute)

POLL_SECONDS = 0.25  # how often an open stream looks for new rows: the board's latency bound
PING_SECONDS = 15.0  # keep-alive comments, so proxies keep an idle stream open
STREAM_BATCH = 200

AgentQuery = Annotated[str | None, Query(max_length=100, description="sender or recipient")]
SearchQuery = Annotated[str | None, Query(max_length=500, description="content substring, any case")]


def _disabled() -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT, "the message board is disabled (message_board.enabled: false in config.yml)"
    )


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=MessagePublic, responses=responses(404, 409, 413, 422)
)
async def create_message(body: MessageCreate, session: SessionDep, board: BoardDep) -> MessagePublic:
    """Post a message (a person or a tool); a reply takes its thread's task, a task its workflow."""
    if not board.enabled:
        raise _disabled()
    target = await run_in_threadpool(views.message_target, session, body.task_id, body.workflow_id, body.reply_to)
    task_id, workflow_id = target
    msg = await board.publish(
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
    return MessagePublic.of(msg)


@router.get("", response_model=list[MessagePublic], responses=responses(422))
def list_messages(
    session: SessionDep,
    task_id: IdQuery = None,
    workflow_id: IdQuery = None,
    message_type: MessageType | None = None,
    agent: AgentQuery = None,
    search: SearchQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="only messages with an id below this (paging)")
    ] = None,
) -> list[MessagePublic]:
    """Messages, newest first, with filters and an id cursor (`before`)."""
    f = MessageFilter(task_id, workflow_id, message_type, agent, search)
    return [MessagePublic.of(m) for m in views.list_messages(session, f, before, limit)]


async def _stream(request: Request, engine: Engine, f: MessageFilter, cursor: int) -> AsyncIterator[Any]:
    # A first comment tells the client the stream is open (and flushes proxy buffers).
    yield ServerSentEvent(comment="connected")
    while True:
        rows = await asyncio.to_thread(views.messages_after, engine, f, cursor, STREAM_BATCH)
        for m in rows:
            cursor = m.id
            yield ServerSentEvent(data=MessagePublic.of(m).model_dump_json(), id=str(m.id), event="message")
        if len(rows) == STREAM_BATCH:
            continue  # catching up: no pause between batches
        # A client that goes away ends the stream inside EventSourceResponse; `stopping` is set
        # by `factory up` on shutdown, so an open board never holds the server up.
        if getattr(request.app.state, "stopping", False):
            return
        await request.app.state.changes.wait(ANY, POLL_SECONDS)  # woken by any new message


_SSE = {
    200: {
        "description": "an endless stream of `event: message` events (`id` = message id, data a MessagePublic)",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.get("/stream/sse", response_class=EventSourceResponse, responses={**_SSE, **responses(422)})
async def stream_messages(
    request: Request,
    engine: EngineDep,
    task_id: IdQuery = None,
    workflow_id: IdQuery = None,
    message_type: MessageType | None = None,
    agent: AgentQuery = None,
    search: SearchQuery = None,
    last_id: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="resume after this id (if no Last-Event-ID)")
    ] = None,
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, le=MAX_ID, description="resume after this message id"),
        WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_ID}),  # a header is never null
    ] = None,
) -> EventSourceResponse:
    """Server-sent events of new messages (`event: message`, `id` = message id, data a MessagePublic), resumable."""
    f = MessageFilter(task_id, workflow_id, message_type, agent, search)
    # Both cursors are validated as ids (0 to 2^63-1; "²" is no id) before the 200: once the
    # stream has started, a bad one could only break it.
    cursor = last_event_id if last_event_id is not None else last_id
    if cursor is None:  # a fresh client gets what is new from now on
        cursor = await asyncio.to_thread(views.last_message_id, engine)
    return EventSourceResponse(
        _stream(request, engine, f, cursor),
        ping=PING_SECONDS,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{message_id}", response_model=MessagePublic, responses=responses(404, 422))
def read_message(message_id: IdPath, session: SessionDep) -> MessagePublic:
    """One message."""
    return MessagePublic.of(views.get_message(session, message_id))


@router.get("/{message_id}/thread", response_model=list[MessagePublic], responses=responses(404, 422))
def read_thread(message_id: IdPath, session: SessionDep) -> list[MessagePublic]:
    """The whole thread the message belongs to: its root, then every reply, oldest first."""
    return [MessagePublic.of(m) for m in views.thread(session, message_id)]
