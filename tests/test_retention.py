"""Retention: old records of finished work are pruned, the rest kept; orphaned agent runs are closed.

A real SQLite file; ages are set by writing `created_at` (and the like) into the past directly.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from factory.store.kv import kv_set
from factory.store.retention import close_orphaned_runs, prune, retention_loop
from factory.store.tables import (
    AgentRun,
    KeyValue,
    Message,
    Task,
    TaskLog,
    WebhookDelivery,
    WorkflowRun,
    make_engine,
    utcnow,
)

OLD = utcnow() - timedelta(days=40)
DAYS = timedelta(days=30)


def _engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'f.db'}")


def _add(engine: Engine, *rows: SQLModel) -> list[int]:
    with Session(engine, expire_on_commit=False) as s:
        for r in rows:
            s.add(r)
        s.commit()
        return [r.id for r in rows]  # type: ignore[attr-defined]


def _age(engine: Engine, model: type[SQLModel], ids: list, column: str = "created_at") -> None:
    with Session(engine) as s:
        s.execute(update(model).where(model.id.in_(ids)).values({column: OLD}))  # type: ignore[attr-defined]
        s.commit()


def _ids(engine: Engine, model: type[SQLModel]) -> set:
    with Session(engine) as s:
        return {r.id for r in s.exec(select(model))}  # type: ignore[attr-defined]


def test_prune_removes_old_records_of_finished_work_and_keeps_the_rest(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    done_old, running, done_new = _add(
        engine,
        Task(title="old", repo="r", status="done", finished_at=OLD),
        Task(title="running", repo="r", status="in_progress"),
        Task(title="new", repo="r", status="failed", finished_at=utcnow()),
    )
    _age(engine, Task, [done_old, running])
    [active_run] = _add(engine, WorkflowRun(name="code_review", title="w", repo="r", status="running"))

    logs = _add(
        engine, *(TaskLog(task_id=t, kind="event", content="x") for t in (done_old, done_old, done_old, running))
    )
    new_log = _add(engine, TaskLog(task_id=done_old, kind="event", content="late"))  # written recently: kept
    new_log += _add(engine, TaskLog(task_id=done_new, kind="event", content="x"))
    _age(engine, TaskLog, logs)

    gone_msgs = _add(
        engine,
        Message(sender="coder", content="old, finished task", task_id=done_old),
        Message(sender="ana", content="old, about nothing going on"),
        Message(sender="coder", content="old, task row gone", task_id=424242),
    )
    kept_msgs = _add(
        engine,
        Message(sender="coder", content="old, task still running", task_id=running),
        Message(
            sender="coder", content="old, its workflow still running", task_id=done_old, workflow_run_id=active_run
        ),
    )
    _age(engine, Message, gone_msgs + kept_msgs)
    kept_msgs += _add(engine, Message(sender="ana", content="new"))

    _add(engine, WebhookDelivery(id="github:old"), WebhookDelivery(id="github:new"))
    _age(engine, WebhookDelivery, ["github:old"], "received_at")

    for key in ("telegram:sent:a", "once:task-1/run/3", "plane:sent:b", "telegram:offset", "fresh:x"):
        kv_set(engine, key, "1")
    kv_set(engine, "telegram:question:1:2", "5")
    with Session(engine) as s:
        old_keys = ["telegram:sent:a", "once:task-1/run/3", "telegram:offset"]
        s.execute(update(KeyValue).where(KeyValue.key.in_(old_keys)).values(updated_at=OLD))
        s.commit()

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for tid in (done_old, running, done_new, 424242):
        p = run_dir / f"task-{tid}.stderr"
        p.write_text("stderr\n")
        os.utime(p, (OLD.timestamp(), OLD.timestamp()))

    homes = tmp_path / "homes"
    for tid in (done_old, running, done_new, 424242):
        home = homes / f"task-{tid}"
        (home / "projects").mkdir(parents=True)
        (home / "projects" / "s.jsonl").write_text("{}\n")
        os.utime(home, (OLD.timestamp(), OLD.timestamp()))

    out = prune(engine, DAYS, run_dir, batch=2, homes_dir=homes)  # small batches: several transactions per table

    assert _ids(engine, TaskLog) == {logs[3], *new_log}  # the running task's old line, and the recent ones
    assert _ids(engine, Message) == set(kept_msgs)
    assert _ids(engine, WebhookDelivery) == {"github:new"}
    with Session(engine) as s:
        keys = {r.key for r in s.exec(select(KeyValue))}
    # dedup marks go; state (the Telegram offset) and unknown keys stay whatever their age
    assert keys == {"plane:sent:b", "telegram:offset", "fresh:x", "telegram:question:1:2"}
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(f"task-{t}.stderr" for t in (running, done_new))
    assert sorted(p.name for p in homes.iterdir()) == sorted(f"task-{t}" for t in (running, done_new))
    assert out.counts == {
        "task_logs": 3,
        "messages": 3,
        "webhook_deliveries": 1,
        "dedup_marks": 2,
        "stderr_files": 2,
        "agent_homes": 2,
    }
    assert not prune(engine, DAYS, run_dir, homes_dir=homes)  # a second pass finds nothing


def test_dedup_marks_of_an_older_database_get_a_timestamp_and_age_from_then(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the key-value table as it was before `updated_at`
        conn.execute("CREATE TABLE keyvalue (key VARCHAR NOT NULL PRIMARY KEY, value VARCHAR NOT NULL)")
        conn.execute("INSERT INTO keyvalue VALUES ('telegram:sent:old', '1')")
    engine = make_engine(f"sqlite:///{db}")
    with Session(engine) as s:
        assert s.get(KeyValue, "telegram:sent:old").updated_at is None
    assert not prune(engine, DAYS)
    with Session(engine) as s:
        row = s.get(KeyValue, "telegram:sent:old")
        assert row is not None and row.updated_at is not None
    assert prune(engine, timedelta(0)).counts == {"dedup_marks": 1}


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _zombie_pid() -> subprocess.Popen[bytes]:
    """A process that exited and was never reaped, as an agent whose worker was killed in a container."""
    proc = subprocess.Popen(["true"])
    while open(f"/proc/{proc.pid}/stat").read().rpartition(") ")[2][:1] != "Z":
        os.sched_yield()
    return proc


def test_agent_runs_left_open_by_a_dead_worker_are_closed(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    before = utcnow() - timedelta(minutes=5)
    worker_started = utcnow() - timedelta(minutes=1)
    orphan, no_pid, live, mine, elsewhere_old, elsewhere_new = _add(
        engine,
        AgentRun(task_id=1, agent_type="coder", host="here", pid=_dead_pid(), started_at=before),
        AgentRun(task_id=2, agent_type="coder", host="here", started_at=before),
        AgentRun(task_id=3, agent_type="coder", host="here", pid=os.getpid(), started_at=before),  # another process
        AgentRun(task_id=4, agent_type="coder", host="here", pid=_dead_pid(), started_at=utcnow()),  # this worker's
        AgentRun(task_id=5, agent_type="coder", host="there", started_at=utcnow() - timedelta(hours=3)),
        AgentRun(task_id=6, agent_type="coder", host="there", started_at=before),
    )
    zombie = _zombie_pid()
    [unreaped] = _add(engine, AgentRun(task_id=7, agent_type="coder", host="here", pid=zombie.pid, started_at=before))
    assert close_orphaned_runs(engine, "here", worker_started, timedelta(minutes=60)) == 4
    zombie.wait()
    with Session(engine) as s:
        still_open = {r.id for r in s.exec(select(AgentRun).where(AgentRun.ended_at.is_(None)))}
    assert still_open == {live, mine, elsewhere_new}
    assert {orphan, no_pid, elsewhere_old, unreaped}.isdisjoint(still_open)
    assert close_orphaned_runs(engine, "here", worker_started, timedelta(minutes=60)) == 0


async def test_the_loop_runs_a_pass_at_start_and_zero_days_keeps_everything(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    [old_task] = _add(engine, Task(title="old", repo="r", status="done", finished_at=OLD))
    logs = _add(engine, TaskLog(task_id=old_task, kind="event", content="x"))
    _age(engine, TaskLog, logs)
    [orphan] = _add(engine, AgentRun(task_id=old_task, agent_type="coder", host="here", started_at=OLD))

    def closed() -> bool:
        with Session(engine) as s:
            return s.get(AgentRun, orphan).ended_at is not None

    for days, logs_left in ((0, set(logs)), (30, set())):
        with Session(engine) as s:
            s.execute(update(AgentRun).values(ended_at=None))
            s.commit()
        loop = asyncio.create_task(
            retention_loop(engine, retention_days=days, run_dir=tmp_path, host="here", longest_run=timedelta(hours=1))
        )
        try:
            async with asyncio.timeout(10):
                while not closed():  # the first pass, at start; the next would be an hour later
                    await asyncio.sleep(0.05)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        assert _ids(engine, TaskLog) == logs_left
