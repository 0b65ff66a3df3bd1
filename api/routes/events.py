"""The dashboard's live feed: the board's cards (filtered here, on the server) and a task's stream.

`GET /api/events` is a server-sent event stream read from the database on each poll, never from
an in-memory queue: a slow or reconnecting client loses nothing. Two kinds of events:
- state (`card`, `order`, `task`, `questions`): level-triggered. The stream remembers what it
  sent and sends a row again only when it changed; a new connection sends everything once, so a
  client that renders by key just catches up.
- rows (`log`, `message`): edge-triggered by id cursors. The event id is `<log id>.<message id>`,
  so a reconnect with `Last-Event-ID` resumes after the last row it had.
A task's stream ends (`event: end`) once its round is finished: a finished page stops asking.

Auth: the dashboard reads this stream with fetch() and a ReadableStream, not EventSource, because
EventSource cannot send the Authorization header: the token stays out of URLs (access logs,
history), and the route is behind the same TokenGate as every /api route.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import EngineDep, IdQuery
from api.errors import JSONRoute, responses
from api.schemas import LogPublic, MessagePublic, QuestionPublic
from factory.store import live
from factory.store.tables import FINISHED

router = APIRouter(prefix="/api", tags=["events"], route_class=JSONRoute)

POLL_SECONDS = 0.5
PING_SECONDS = 15.0
BATCH = 200

StatusQuery = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")]
NameQuery = Annotated[str | None, Query(max_length=200)]
_CURSOR = re.compile(r"^(\d{1,19})\.(\d{1,19})$")


@router.get("/board", responses=responses(422))
async def board(
    engine: EngineDep, status_: Annotated[StatusQuery, Query(alias="status")] = None,
    repo: NameQuery = None, agent: NameQuery = None, text: NameQuery = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The board's cards, newest first: one per single task, one per workflow run with its steps."""
    return await asyncio.to_thread(live.board_cards, engine, live.BoardFilter(status_, repo, agent, text))


def _state(event: str, data: Any) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data), event=event)


async def _board_stream(request: Request, engine: Any, f: live.BoardFilter) -> AsyncIterator[Any]:
    yield ServerSentEvent(comment="connected")
    sent: dict[str, str] = {}
    order: list[str] | None = None
    while True:
        cards = await asyncio.to_thread(live.board_cards, engine, f)
        for c in cards:
            body = json.dumps(c, sort_keys=True)
            if sent.get(c["key"]) != body:
                sent[c["key"]] = body
                yield _state("card", c)
        keys = [c["key"] for c in cards]
        if keys != order:
            order = keys
            yield _state("order", keys)
        if getattr(request.app.state, "stopping", False):
            return
        await asyncio.sleep(POLL_SECONDS)


async def _task_stream(request: Request, engine: Any, task_id: int, log_c: int, msg_c: int) -> AsyncIterator[Any]:
    # The round's state (its tasks, their questions) is read every POLL_SECONDS; its new log lines and
    # messages whenever `changes` wakes the stream for them (factory/store/changes.py), which with agents
    # printing is far more often: a wake takes the rows the look read (or reads them itself, one session).
    yield ServerSentEvent(comment="connected")
    loop = asyncio.get_running_loop()
    sent: dict[int, str] = {}
    asked = ""
    tasks: list[dict[str, Any]] = []
    state_due = 0.0
    changes = request.app.state.changes
    covered: tuple[int, int] | None = None  # the log and message ids up to which this stream has every row
    while True:
        fresh = loop.time() >= state_due
        if fresh:
            state_due = loop.time() + POLL_SECONDS
            tasks, questions = await asyncio.to_thread(live.round_state, engine, task_id)
            for t in tasks:
                body = json.dumps(t, sort_keys=True)
                if sent.get(t["id"]) != body:
                    sent[t["id"]] = body
                    yield _state("task", t)
            qs = [QuestionPublic.model_validate(q).model_dump(mode="json") for q in questions]
            if json.dumps(qs) != asked:
                asked = json.dumps(qs)
                yield _state("questions", qs)
        ids = [t["id"] for t in tasks]
        # a pass that may end the stream reads the rows itself, after the state: every row written before the
        # round finished is then sent; any other pass may take them from the look
        ending = fresh and all(t["status"] in FINISHED for t in tasks)
        served = None if ending else changes.served(ids, log_c, msg_c, covered)
        if served is not None:  # the look that woke this stream read the rows already
            logs, msgs, covered = served
        else:
            mark = changes.mark()  # rows up to it were stored before this read starts
            logs, msgs = await asyncio.to_thread(live.rows_after, engine, ids, log_c, msg_c, BATCH)
            covered = mark if len(logs) < BATCH and len(msgs) < BATCH else None
        for r in logs:
            log_c = r.id
            yield ServerSentEvent(
                data=LogPublic.model_validate(r).model_dump_json(), event="log", id=f"{log_c}.{msg_c}"
            )
        for m in msgs:
            msg_c = m.id
            yield ServerSentEvent(data=MessagePublic.of(m).model_dump_json(), event="message", id=f"{log_c}.{msg_c}")
        if len(logs) == BATCH or len(msgs) == BATCH:
            continue  # catching up
        if ending:
            yield _state("end", {"task_id": task_id})
            return
        if getattr(request.app.state, "stopping", False):
            return
        # woken by a new log line or message of the round, or when the state is due
        await changes.wait(ids, max(0.0, state_due - loop.time()))


_SSE = {200: {"description": "server-sent events", "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


@router.get("/events", response_class=EventSourceResponse, responses={**_SSE, **responses(404, 422)})
async def events(
    request: Request,
    engine: EngineDep,
    task_id: IdQuery = None,
    status_: Annotated[StatusQuery, Query(alias="status")] = None,
    repo: NameQuery = None,
    agent: NameQuery = None,
    text: NameQuery = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=40)] = None,
) -> EventSourceResponse:
    """Live changes: with `task_id`, that task's round (`task`, `questions`, `log`, `message`, `end`);
    without, the board's cards with the filters (`card`, `order`). Resumable by `Last-Event-ID`."""
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if task_id is None:
        f = live.BoardFilter(status_, repo, agent, text)
        return EventSourceResponse(_board_stream(request, engine, f), ping=PING_SECONDS, headers=headers)
    if not await asyncio.to_thread(live.round_tasks, engine, task_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} not found")
    log_c = msg_c = 0
    if last_event_id:
        m = _CURSOR.match(last_event_id.strip())
        if not m:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "Last-Event-ID is not <log id>.<message id>")
        log_c, msg_c = int(m.group(1)), int(m.group(2))
    return EventSourceResponse(_task_stream(request, engine, task_id, log_c, msg_c), ping=PING_SECONDS, headers=headers)
