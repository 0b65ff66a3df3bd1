"""Agents' log lines written in batches: one transaction for every line of every run in a window.

With many agents printing at once, a transaction (and a thread hop, and a pooled connection) per
output line made the readers wait on the writers: 20 agents exhausted the connection pool and the
API's reads queued behind the log writes. A `LogSink` collects the lines of all the runs of this
process and writes them every `interval` seconds (or at `max_batch` lines) in one transaction, in
the order they came; the runs' "last output" marks and their ends ride in the same transaction.

Nothing is dropped: a failed write puts its lines back in front of the newer ones and is retried at
the next window; `flush()` (a run's end) waits until every line added before it is written, and
raises if that cannot be done, so a run never reports success over lost lines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from factory.domain.redact import scrub
from factory.domain.text import clip_noted
from factory.store.tables import AgentRun, TaskLog, session_scope, utcnow
from factory.store.writes import MAX_LOG_CHARS

log = logging.getLogger("factory.logsink")


@dataclass(frozen=True)
class _Line:
    task_id: int
    kind: str
    content: str
    attempt: int
    secrets: Sequence[str]
    at: datetime = field(default_factory=utcnow)  # when Factory read it, not when the batch was written


class LogSink:
    """Task log lines and agent-run marks of this process, written together every `interval` seconds."""

    def __init__(self, engine: Engine, interval: float = 0.1, max_batch: int = 500) -> None:
        self.engine = engine
        self.interval = interval
        self.max_batch = max_batch
        self._lines: list[_Line] = []
        self._marks: dict[int, dict[str, Any]] = {}  # run id -> fields, the newest of the window
        self._lock: asyncio.Lock | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.writes = 0  # transactions made (tests and the bench read it)

    def add(self, task_id: int, kind: str, content: str, attempt: int = 1, secrets: Sequence[str] = ()) -> None:
        """Queue one line (scrubbed and clipped when written, as `add_log` does)."""
        self._lines.append(_Line(task_id, kind, content, attempt, secrets))
        self._schedule()

    def add_many(
        self, task_id: int, entries: Sequence[tuple[str, str]], attempt: int = 1, secrets: Sequence[str] = ()
    ) -> None:
        self._lines.extend(_Line(task_id, k, c, attempt, secrets) for k, c in entries)
        self._schedule()

    def mark(
        self, run_id: int, last_output_at: datetime, last_output: str | None = None, secrets: Sequence[str] = ()
    ) -> None:
        """The run's latest output time (and text, scrubbed like a log line), written with the next batch."""
        fields: dict[str, Any] = {"last_output_at": last_output_at}
        if last_output is not None:
            fields["last_output"] = scrub(last_output, secrets)[:300]
        self._marks.setdefault(run_id, {}).update(fields)
        self._schedule()

    def end(self, run_id: int, ended_at: datetime) -> None:
        """The run's end, written with the next batch (its last lines and this in one transaction)."""
        self._marks.setdefault(run_id, {})["ended_at"] = ended_at
        self._schedule()

    async def flush(self) -> None:
        """Write everything queued so far; raises when the database refuses (the lines stay queued)."""
        await self._write()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        if len(self._lines) >= self.max_batch:
            self._start(loop)
        elif self._timer is None:
            self._timer = loop.call_later(self.interval, self._start, loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = loop.create_task(self._background())

    async def _background(self) -> None:
        try:
            await self._write()
        except Exception as exc:  # the lines are kept; the next window (or the run's flush) tries again
            log.warning("could not write %d log lines (will retry): %s", len(self._lines), exc)
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self.interval * 5, self._start,
                                                                    asyncio.get_running_loop())  # fmt: skip

    async def _write(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one batch at a time: ids follow the order the lines came in
            while self._lines or self._marks:
                lines, self._lines = self._lines[: self.max_batch], self._lines[self.max_batch :]
                marks, self._marks = self._marks, {}
                try:
                    await asyncio.to_thread(self._commit, lines, marks)
                except BaseException:
                    self._lines[:0] = lines  # back in front of what came meanwhile
                    for run_id, fields in marks.items():
                        self._marks[run_id] = {**fields, **self._marks.get(run_id, {})}
                    raise

    def _commit(self, lines: list[_Line], marks: dict[int, dict[str, Any]]) -> None:
        with session_scope(self.engine) as s:
            for ln in lines:
                text = clip_noted(scrub(ln.content, ln.secrets), MAX_LOG_CHARS)
                s.add(TaskLog(task_id=ln.task_id, kind=ln.kind, content=text, attempt=ln.attempt, created_at=ln.at))
            for run_id, fields in marks.items():
                run = s.get(AgentRun, run_id)
                if run is not None:
                    for k, v in fields.items():
                        setattr(run, k, v)
                    s.add(run)
            s.commit()
        self.writes += 1
