"""Retention: prune what people no longer read, and close agent runs a dead worker left open.

`retention_days` (config) bounds how long the records of finished work stay: task logs, board
messages, webhook deliveries, dedup marks in the key-value table and the agents' stderr files.
Rows of work still going on are kept whatever their age. Deletes go in small batches, each its own
transaction, so a large table never holds SQLite's write lock for long.

Independently of retention, `close_orphaned_runs` ends `AgentRun` rows whose process died with its
worker (they would be listed by `/api/agents` for ever): rows of this host that started before this
worker did and whose process is gone, and rows of any host older than the longest an agent may run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.engine import Engine

from factory.store.kv import DEDUP_PREFIXES
from factory.store.people import AuditEntry, AuthSession
from factory.store.tables import (
    FINISHED,
    RUN_FINISHED,
    AgentRun,
    KeyValue,
    Message,
    Task,
    TaskLog,
    WebhookDelivery,
    WorkflowRun,
    utcnow,
)

log = logging.getLogger(__name__)

BATCH = 500
"""Rows per delete: small enough that other writers wait milliseconds, not seconds."""

ORPHAN_SLACK = timedelta(minutes=10)
"""Beyond `agent_timeout_minutes`: the activity's own grace (2 min) and the kill itself."""

_STDERR = re.compile(r"task-(\d+)\.stderr")
_HOME = re.compile(r"task-(\d+)")


@dataclass
class Pruned:
    """How many rows and files one pass removed or closed, by kind."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, n: int) -> None:
        if n:
            self.counts[kind] = self.counts.get(kind, 0) + n

    def __bool__(self) -> bool:
        return bool(self.counts)


def _finished_task(cutoff: datetime) -> Any:
    """Tasks that ended (or, never started, were created) before `cutoff`."""
    return and_(
        Task.status.in_([str(s) for s in FINISHED]),
        func.coalesce(Task.finished_at, Task.created_at) < cutoff,
    )


def _finished_run(cutoff: datetime) -> Any:
    return and_(
        WorkflowRun.status.in_([str(s) for s in RUN_FINISHED]),
        func.coalesce(WorkflowRun.finished_at, WorkflowRun.created_at) < cutoff,
    )


def _batched(engine: Engine, table: Any, ids: Any, batch: int) -> int:
    """Delete the rows of `table` whose id `ids` (a select of ids) yields, `batch` at a time."""
    total = 0
    while True:
        with engine.begin() as conn:
            n = conn.execute(delete(table).where(table.c.id.in_(ids.limit(batch)))).rowcount or 0
        total += n
        if n < batch:
            return total


def prune(
    engine: Engine,
    older_than: timedelta,
    run_dir: Path | None = None,
    batch: int = BATCH,
    homes_dir: Path | None = None,
) -> Pruned:
    """Remove the records of work finished longer than `older_than` ago (blocking: run it in a thread).

    Args:
        engine: Factory's database.
        older_than: the retention period (`retention_days`).
        run_dir: the workers' run directory, whose `task-N.stderr` files are pruned with their task.
        batch: rows per delete transaction.
        homes_dir: the agents' per-task CLI homes (`task-N`, sessions a retry may resume), pruned likewise.

    Returns:
        The counts removed, by kind.
    """
    cutoff = utcnow() - older_than
    out = Pruned()
    t, m, w = Task.__table__, Message.__table__, WorkflowRun.__table__
    logs = TaskLog.__table__
    old_logs = (
        select(logs.c.id).join(t, t.c.id == logs.c.task_id).where(logs.c.created_at < cutoff, _finished_task(cutoff))
    )
    out.add("task_logs", _batched(engine, logs, old_logs, batch))
    # a message goes when it is old and neither its task nor its workflow run is still going on
    task_ok = or_(m.c.task_id.is_(None), t.c.id.is_(None), _finished_task(cutoff))
    run_ok = or_(m.c.workflow_run_id.is_(None), w.c.id.is_(None), _finished_run(cutoff))
    old_msgs = (
        select(m.c.id)
        .select_from(m.outerjoin(t, t.c.id == m.c.task_id).outerjoin(w, w.c.id == m.c.workflow_run_id))
        .where(m.c.created_at < cutoff, task_ok, run_ok)
    )
    out.add("messages", _batched(engine, m, old_msgs, batch))
    out.add("webhook_deliveries", _delete_keys(engine, WebhookDelivery, WebhookDelivery.received_at < cutoff, batch))
    with engine.begin() as conn:  # marks written before the column existed age from now on
        conn.execute(update(KeyValue).where(KeyValue.updated_at.is_(None)).values(updated_at=utcnow()))
    dedup = or_(*(KeyValue.key.startswith(p) for p in DEDUP_PREFIXES))
    out.add("dedup_marks", _delete_keys(engine, KeyValue, and_(KeyValue.updated_at < cutoff, dedup), batch))
    if run_dir is not None:
        out.add("stderr_files", _prune_task_files(engine, _per_task(run_dir, _STDERR), cutoff))
    if homes_dir is not None:
        out.add("agent_homes", _prune_task_files(engine, _per_task(homes_dir, _HOME), cutoff))
    return out


def prune_people(engine: Engine, audit_older_than: timedelta | None, batch: int = BATCH) -> Pruned:
    """Audit entries older than `auth.audit_retention_days` (None: keep them) and sessions ended a day ago."""
    out = Pruned()
    now = utcnow()
    if audit_older_than is not None:
        out.add("audit_entries", _delete_keys(engine, AuditEntry, AuditEntry.at < now - audit_older_than, batch))
    ended = or_(AuthSession.expires_at < now - timedelta(days=1), AuthSession.revoked_at < now - timedelta(days=1))
    out.add("sessions", _delete_keys(engine, AuthSession, ended, batch))
    return out


def prune_files(engine: Engine, older_than: timedelta, run_dir: Path, homes_dir: Path | None = None) -> Pruned:
    """`prune`'s host-local part alone: the per-task files under this host's run and homes folders.

    The rows are shared by every host and pruned once per cluster; the files are on each host's disk.
    """
    cutoff = utcnow() - older_than
    out = Pruned()
    out.add("stderr_files", _prune_task_files(engine, _per_task(run_dir, _STDERR), cutoff))
    if homes_dir is not None:
        out.add("agent_homes", _prune_task_files(engine, _per_task(homes_dir, _HOME), cutoff))
    return out


def _delete_keys(engine: Engine, model: Any, where: Any, batch: int) -> int:
    """`_batched` for tables keyed by a string (`key` or `id`)."""
    pk = next(iter(model.__table__.primary_key.columns))
    total = 0
    while True:
        with engine.begin() as conn:
            keys = list(conn.execute(select(pk).where(where).limit(batch)).scalars())
            if keys:
                conn.execute(delete(model.__table__).where(pk.in_(keys)))
        total += len(keys)
        if len(keys) < batch:
            return total


def _per_task(folder: Path, pattern: re.Pattern[str]) -> dict[int, Path]:
    """The entries of `folder` named for a task (`task-N...`), by task id."""
    found: dict[int, Path] = {}
    for p in folder.glob("task-*"):
        hit = pattern.fullmatch(p.name)
        if hit:
            found[int(hit[1])] = p
    return found


def _prune_task_files(engine: Engine, files: dict[int, Path], cutoff: datetime) -> int:
    """Remove the files or folders of tasks finished before `cutoff` (or gone) that were not written since."""
    if not files:
        return 0
    keep: set[int] = set()
    with engine.connect() as conn:
        ids = list(files)
        for i in range(0, len(ids), BATCH):
            chunk = ids[i : i + BATCH]
            rows = conn.execute(select(Task.id, _finished_task(cutoff)).where(Task.id.in_(chunk)))
            keep.update(tid for tid, done in rows if not done)
    removed = 0
    for tid, p in files.items():
        try:
            if tid in keep or p.stat().st_mtime >= cutoff.timestamp():
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed += 1
        except FileNotFoundError:
            continue
    return removed


def _alive(pid: int) -> bool:
    """Whether the process runs; a zombie (its dead worker's orphan, never reaped in a container) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours to judge
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(") ")[2][:1] != "Z"
    except FileNotFoundError:  # gone since the signal test
        return False
    except OSError:  # no /proc: the signal test is all there is
        return True


def close_orphaned_runs(engine: Engine, host: str, worker_started: datetime, longest_run: timedelta) -> int:
    """End the `AgentRun` rows whose agent died with its worker (blocking: run it in a thread).

    Args:
        engine: Factory's database.
        host: this worker's host id (`AgentRun.host` of the runs it starts).
        worker_started: when this worker started; its own runs all started later.
        longest_run: `agent_timeout_minutes`: no agent runs longer (its watchdog kills it).

    Returns:
        How many rows were closed.
    """
    now = utcnow()
    with engine.connect() as conn:
        open_runs = conn.execute(
            select(AgentRun.id, AgentRun.host, AgentRun.pid, AgentRun.started_at).where(AgentRun.ended_at.is_(None))
        ).all()
    stale_before = now - longest_run - ORPHAN_SLACK
    orphans = []
    for run_id, run_host, pid, started_at in open_runs:
        started = started_at if started_at.tzinfo else started_at.replace(tzinfo=now.tzinfo)
        if started < stale_before:
            orphans.append(run_id)  # no agent outlives its watchdog, whichever host it ran on
        elif run_host == host and started < worker_started and (pid is None or not _alive(pid)):
            orphans.append(run_id)  # started by an earlier worker process on this host, and gone
    for i in range(0, len(orphans), BATCH):
        with engine.begin() as conn:
            conn.execute(
                update(AgentRun)
                .where(AgentRun.id.in_(orphans[i : i + BATCH]), AgentRun.ended_at.is_(None))
                .values(ended_at=now)
            )
    return len(orphans)


async def retention_loop(
    engine: Engine,
    *,
    retention_days: float,
    run_dir: Path,
    host: str,
    longest_run: timedelta,
    interval: float = 3600.0,
    homes_dir: Path | None = None,
) -> None:
    """Prune and close orphaned agent runs now, then every `interval` seconds, until cancelled."""
    worker_started = utcnow()
    while True:
        try:
            if retention_days > 0:
                pruned = await asyncio.to_thread(
                    prune, engine, timedelta(days=retention_days), run_dir, BATCH, homes_dir
                )
                if pruned:
                    log.info("retention (%g days) removed %s", retention_days, pruned.counts)
            closed = await asyncio.to_thread(close_orphaned_runs, engine, host, worker_started, longest_run)
            if closed:
                log.info("closed %d agent runs left open by a dead worker", closed)
        except Exception as exc:  # a failed pass (database busy) is tried again next time
            log.warning("retention pass failed: %s", exc)
        await asyncio.sleep(interval)
