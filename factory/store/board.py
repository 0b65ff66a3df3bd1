"""The message board: agents', Factory's and people's messages, and the listeners that forward them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from factory.domain.redact import scrub
from factory.store.kv import first_write, mark_written
from factory.store.tables import MESSAGE_TYPES, Message, session_scope, utcnow

log = logging.getLogger(__name__)

MessageListener = Callable[[Message], Awaitable[None]]


class Board:
    """The message board: stores messages and tells listeners (Telegram forwarding).

    Listeners run on the event loop. `post` is a blocking database write: call it from a thread
    (a sync activity or route) or use `publish` from async code; either way the listeners run on
    the loop the board last saw.
    """

    def __init__(self, engine: Engine, enabled: bool = True, secrets: list[str] = ()):
        self.engine = engine
        self.enabled = enabled
        self.secrets = list(secrets)
        self.listeners: list[MessageListener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop = _running_loop()

    def post(
        self,
        sender: str,
        content: str,
        message_type: str = "info",
        recipient: str | None = None,
        task_id: int | None = None,
        workflow_run_id: int | None = None,
        reply_to: int | None = None,
        once_key: str | None = None,
    ) -> Message | None:
        """Store a message (secrets scrubbed) and tell the listeners; None when the board is off.

        With `once_key` (a retried activity's key), a second call stores and tells nothing and
        returns the message the first call stored.
        """
        if not self.enabled:
            return None
        msg = Message(
            sender=sender,
            content=scrub(content, self.secrets),
            message_type=message_type if message_type in MESSAGE_TYPES else "info",
            recipient=recipient,
            task_id=task_id,
            workflow_run_id=workflow_run_id,
            reply_to=reply_to,
        )
        with session_scope(self.engine) as s:
            earlier = _earlier(s, once_key)
            if earlier is not None:
                return earlier
            s.add(msg)
            s.flush()
            assert msg.id is not None
            mark_written(s, once_key, msg.id)
            try:
                s.commit()
            except IntegrityError:  # an earlier attempt, still running, committed first
                s.rollback()
                return _earlier(s, once_key)
            s.refresh(msg)
        self._notify(msg)
        return msg

    async def publish(self, sender: str, content: str, message_type: str = "info", **where: Any) -> Message | None:
        """`post` from async code: the database write runs in a thread, the listeners on this loop."""
        self._loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self.post, sender, content, message_type, **where)

    def inbox(self, agent_type: str, task_id: int | None, workflow_run_id: int | None) -> list[Message]:
        """Undelivered messages to this agent type in the same workflow (or task).

        They stay undelivered until `mark_delivered`, which the run that read them calls when it
        finishes: a run that dies first leaves them for its retry.
        """
        if not self.enabled:
            return []
        with session_scope(self.engine) as s:
            q = select(Message).where(Message.recipient == agent_type, col(Message.delivered_at).is_(None))
            if workflow_run_id is not None:
                q = q.where(Message.workflow_run_id == workflow_run_id)
            elif task_id is not None:
                q = q.where(Message.task_id == task_id)
            else:
                return []
            return list(s.exec(q.order_by(col(Message.id))))

    def mark_delivered(self, ids: list[int]) -> None:
        """Mark these messages delivered (those not marked yet): their reader's run has finished."""
        if not ids:
            return
        with session_scope(self.engine) as s:
            s.execute(
                update(Message)
                .where(col(Message.id).in_(ids), col(Message.delivered_at).is_(None))
                .values(delivered_at=utcnow())
            )
            s.commit()

    def _notify(self, msg: Message) -> None:
        if not self.listeners:
            return
        loop = _running_loop()
        if loop is not None:
            self._loop = loop
            self._spawn(msg)
        elif self._loop is not None and self._loop.is_running():  # posted from a worker thread
            self._loop.call_soon_threadsafe(self._spawn, msg)

    def _spawn(self, msg: Message) -> None:
        for listener in self.listeners:
            t = asyncio.get_running_loop().create_task(self._safe(listener, msg))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _safe(listener: MessageListener, msg: Message) -> None:
        try:
            await listener(msg)
        except Exception as exc:  # a listener (Telegram) never breaks posting
            log.warning("message listener failed: %s", exc)


def _earlier(s: Session, once_key: str | None) -> Message | None:
    msg_id = first_write(s, once_key)
    return s.get(Message, msg_id) if msg_id is not None else None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
