"""New rows, looked for once for every open stream: the live streams wake on them instead of each polling.

An open task page (`GET /api/events?task_id=`) and the message board's stream each looked for new rows
on their own every 0.5 s and 0.25 s: a line an agent printed waited up to that long after it was
stored, and N open pages made N queries a period whether anything was new or not. One `Changes` per
API process asks the database every `tick` seconds which tasks got new log lines or messages since its
last look (one query per table, a range of the primary key) and wakes only the streams that follow
those tasks. The writer is another process (the worker under `factory up`) or another host (workers
on PostgreSQL), so the database is the one channel all of them share. A stream still looks on its own
at its old period, so a wake that is missed (a look that failed) costs only the old latency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from factory.store.tables import Message, TaskLog

log = logging.getLogger("factory.changes")

ANY = None  # what a stream that follows every message (the message board) waits on
FORGET_AFTER = 10.0  # seconds without a waiter after which the next look starts afresh (no long scan)


class Changes:
    """Wakes the waiters whose tasks got new log lines or messages; looks only while someone waits."""

    def __init__(self, engine: Engine, tick: float = 0.1) -> None:
        self.engine = engine
        self.tick = tick
        self.looks = 0  # looks made (tests read it)
        self._seen: tuple[int, int] | None = None  # the highest log and message ids at the last look
        self._waiters: dict[asyncio.Future[None], frozenset[int] | None] = {}
        self._looking: asyncio.Task[None] | None = None
        self._stopped_at = 0.0

    async def wait(self, task_ids: Iterable[int] | None, timeout: float) -> bool:
        """Until a log line or message of one of `task_ids` (ANY: any message) is stored, or `timeout`.

        True when woken by a new row, False when the time ran out.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[fut] = frozenset(task_ids) if task_ids is not None else ANY
        if self._looking is None or self._looking.done():
            if time.monotonic() - self._stopped_at > FORGET_AFTER:
                self._seen = None
            self._looking = asyncio.create_task(self._look_while_waited())
        try:
            done, _ = await asyncio.wait({fut}, timeout=timeout)
            return bool(done)
        finally:
            self._waiters.pop(fut, None)
            fut.cancel()

    async def _look_while_waited(self) -> None:
        while self._waiters:
            try:
                logs, messages, any_message = await asyncio.to_thread(self._new_rows)
            except Exception as exc:  # the streams' own period still holds
                log.debug("could not look for new rows: %s", exc)
            else:
                self._wake(logs | messages, any_message)
            await asyncio.sleep(self.tick)
        self._stopped_at = time.monotonic()

    def _wake(self, tasks: set[int], any_message: bool) -> None:
        for fut, follows in list(self._waiters.items()):
            if fut.done():
                continue
            if any_message if follows is ANY else follows & tasks:
                fut.set_result(None)

    def _new_rows(self) -> tuple[set[int], set[int], bool]:
        """The tasks with log lines and with messages newer than the last look, and whether any message is."""
        with Session(self.engine) as s:
            self.looks += 1
            if self._seen is None:  # the first look only marks where "new" starts
                self._seen = (s.exec(select(func.max(TaskLog.id))).one() or 0,
                              s.exec(select(func.max(Message.id))).one() or 0)  # fmt: skip
                return set(), set(), False
            log_seen, msg_seen = self._seen
            logs = s.exec(
                select(TaskLog.task_id, func.max(TaskLog.id)).where(TaskLog.id > log_seen).group_by(TaskLog.task_id)
            ).all()
            msgs = s.exec(
                select(Message.task_id, func.max(Message.id)).where(Message.id > msg_seen).group_by(Message.task_id)
            ).all()
        self._seen = (max([log_seen, *(i for _, i in logs)]), max([msg_seen, *(i for _, i in msgs)]))
        return {t for t, _ in logs}, {t for t, _ in msgs if t is not None}, bool(msgs)
