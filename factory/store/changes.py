"""New rows, looked for once for every open stream: the live streams wake on them instead of each polling.

An open task page (`GET /api/events?task_id=`) and the message board's stream each looked for new rows
on their own every 0.5 s and 0.25 s: a line an agent printed waited up to that long after it was
stored, and N open pages made N queries a period whether anything was new or not. One `Changes` per
API process asks the database every `tick` seconds which tasks got new log lines or messages since its
last look (one query per table, a range of the primary key) and wakes only the streams that follow
those tasks. The writer is another process (the worker under `factory up`) or another host (workers
on PostgreSQL), so the database is the one channel all of them share. A stream still looks on its own
at its old period, so a wake that is missed (a look that failed) costs only the old latency.

A look also reads the new rows of the tasks someone waits for, once, and keeps them as `Look`: a woken
task stream takes its rows from there (`served`) instead of asking the database itself, as long as
the looks kept cover everything after what the stream has read (`covered`); otherwise it reads them
itself. The last few looks are kept, so a stream that was busy (or waited for a CPU) through a look or
two is still served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from factory.store.tables import Message, TaskLog

log = logging.getLogger("factory.changes")

ANY = None  # what a stream that follows every message (the message board) waits on
LOOK_ROWS = 2000  # rows a look keeps at most; past it the streams read their own
KEEP_LOOKS = 10  # the newest looks kept for `served` (a second at the default tick)
FOLLOW_FOR = 2.0  # seconds a look still reads a task's rows after its stream last waited (it may be busy sending)
FORGET_AFTER = 10.0  # seconds without a waiter after which the next look starts afresh (no long scan)


@dataclass(frozen=True)
class Look:
    """What one look found: the log and message ids it covers, (after `since`, up to `upto`], and the rows of
    the tasks followed then (complete: no more rows than LOOK_ROWS)."""

    since: tuple[int, int]
    upto: tuple[int, int]
    followed: frozenset[int] = frozenset()
    logs: dict[int, list[TaskLog]] = field(default_factory=dict)
    messages: dict[int, list[Message]] = field(default_factory=dict)
    complete: bool = False


class Changes:
    """Wakes the waiters whose tasks got new log lines or messages; looks only while someone waits."""

    def __init__(self, engine: Engine, tick: float = 0.1) -> None:
        self.engine = engine
        self.tick = tick
        self.looks = 0  # looks made (tests read it)
        self._seen: tuple[int, int] | None = None  # the highest log and message ids at the last look
        self.recent: deque[Look] = deque(maxlen=KEEP_LOOKS)  # the newest looks, oldest first, one after another
        self._waiters: dict[asyncio.Future[None], frozenset[int] | None] = {}
        self._followed_at: dict[int, float] = {}  # task id -> when a stream last waited for it
        self._looking: asyncio.Task[None] | None = None
        self._stopped_at = 0.0

    async def wait(self, task_ids: Iterable[int] | None, timeout: float) -> bool:
        """Until a log line or message of one of `task_ids` (ANY: any message) is stored, or `timeout`.

        True when woken by a new row, False when the time ran out.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[fut] = follows = frozenset(task_ids) if task_ids is not None else ANY
        now = time.monotonic()
        for t in follows or ():
            self._followed_at[t] = now
        if self._looking is None or self._looking.done():
            if now - self._stopped_at > FORGET_AFTER:
                self._seen = None
                self.recent.clear()
            self._looking = asyncio.create_task(self._look_while_waited())
        try:
            done, _ = await asyncio.wait({fut}, timeout=timeout)
            return bool(done)
        finally:
            self._waiters.pop(fut, None)
            fut.cancel()

    @property
    def last(self) -> Look | None:
        """The newest look (rows kept for the streams it woke)."""
        return self.recent[-1] if self.recent else None

    def mark(self) -> tuple[int, int] | None:
        """The ids the newest look covers: rows up to them were stored before a read that starts now."""
        return self.last.upto if self.last else None

    def served(
        self, task_ids: Sequence[int], log_cursor: int, msg_cursor: int, covered: tuple[int, int] | None
    ) -> tuple[list[TaskLog], list[Message], tuple[int, int]] | None:
        """The tasks' rows after the cursors from the newest looks, and what the reader then covers; None when
        they cannot say (a look did not follow these tasks or kept too many rows, or the looks kept start after
        `covered`)."""
        if covered is None:
            return None
        want = set(task_ids)
        chain: list[Look] = []  # newest first, back to the one that starts where the reader's rows end
        for look in reversed(self.recent):
            if not look.complete or not want <= look.followed or (chain and look.upto != chain[-1].since):
                return None
            chain.append(look)
            if look.since[0] <= covered[0] and look.since[1] <= covered[1]:
                break
        else:
            return None
        logs = sorted(
            (r for look in chain for t in task_ids for r in look.logs.get(t, ()) if (r.id or 0) > log_cursor), key=_id
        )
        msgs = sorted(
            (m for look in chain for t in task_ids for m in look.messages.get(t, ()) if (m.id or 0) > msg_cursor),
            key=_id,
        )
        return logs, msgs, chain[0].upto

    async def _look_while_waited(self) -> None:
        while self._waiters:
            # the tasks streams wait for now, and those a stream waited for lately (busy sending what the last
            # look found, it is not waiting; its next wait is served only if the looks in between followed it)
            now = time.monotonic()
            self._followed_at = {t: at for t, at in self._followed_at.items() if now - at < FOLLOW_FOR}
            followed = frozenset(self._followed_at).union(*(f for f in self._waiters.values() if f is not ANY))
            try:
                look, any_message = await asyncio.to_thread(self._look, followed)
            except Exception as exc:  # the streams' own period still holds
                log.debug("could not look for new rows: %s", exc)
            else:
                self.recent.append(look)
                self._wake(look, any_message)
            await asyncio.sleep(self.tick)
        self._stopped_at = time.monotonic()

    def _wake(self, look: Look, any_message: bool) -> None:
        tasks = set(look.logs) | set(look.messages)
        for fut, follows in list(self._waiters.items()):
            if fut.done():
                continue
            if any_message if follows is ANY else (follows & tasks or (not look.complete and follows)):
                fut.set_result(None)

    def _look(self, followed: frozenset[int]) -> tuple[Look, bool]:
        """New rows of the followed tasks since the last look, and whether any new message is there."""
        with Session(self.engine) as s:
            self.looks += 1
            upto = (s.exec(select(func.max(TaskLog.id))).one() or 0, s.exec(select(func.max(Message.id))).one() or 0)
            if self._seen is None:  # the first look only marks where "new" starts
                self._seen = upto
                return Look(upto, upto, complete=True), False
            since = self._seen
            logs: list[TaskLog] = []
            msgs: list[Message] = []
            if followed and upto[0] > since[0]:
                logs = list(s.exec(select(TaskLog).where(
                    TaskLog.id > since[0], TaskLog.id <= upto[0], col(TaskLog.task_id).in_(followed)
                ).order_by(col(TaskLog.id)).limit(LOOK_ROWS + 1)))  # fmt: skip
            if followed and upto[1] > since[1]:
                msgs = list(s.exec(select(Message).where(
                    Message.id > since[1], Message.id <= upto[1], col(Message.task_id).in_(followed)
                ).order_by(col(Message.id)).limit(LOOK_ROWS + 1)))  # fmt: skip
        self._seen = upto
        by_log: dict[int, list[TaskLog]] = {}
        for r in logs:
            by_log.setdefault(r.task_id, []).append(r)
        by_msg: dict[int, list[Message]] = {}
        for m in msgs:
            if m.task_id is not None:
                by_msg.setdefault(m.task_id, []).append(m)
        complete = len(logs) <= LOOK_ROWS and len(msgs) <= LOOK_ROWS
        return Look(since, upto, followed, by_log, by_msg, complete), upto[1] > since[1]


def _id(row: TaskLog | Message) -> int:
    return row.id or 0
