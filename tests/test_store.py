"""The store: task writes, the board's listeners from worker threads, indexes on existing databases."""

from __future__ import annotations

import asyncio
import sqlite3

from sqlmodel import select

from factory.contracts import TaskUpdate
from factory.store.board import Board
from factory.store.tables import FINISHED, Message, Task, TaskLog, TaskStatus, make_engine, session_scope
from factory.store.writes import MAX_LOG_CHARS, add_log, update_task


def _engine(tmp_path):
    return make_engine(f"sqlite:///{tmp_path / 'factory.db'}")


async def test_a_message_posted_from_a_worker_thread_reaches_the_listeners_on_the_loop(tmp_path) -> None:
    board = Board(_engine(tmp_path), secrets=["hunter2-secret"])
    heard: list[tuple[str, bool]] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def listener(msg: Message) -> None:
        heard.append((msg.content, asyncio.get_running_loop() is loop))
        done.set()

    board.listeners.append(listener)
    # a sync activity posts from the worker's executor thread, where no loop runs
    msg = await asyncio.to_thread(board.post, "coder", "handoff with hunter2-secret", "handoff")
    await asyncio.wait_for(done.wait(), 5)
    assert msg is not None and heard == [("handoff with ***", True)]
    done.clear()
    await board.publish("factory", "from async code", "status", task_id=3)
    await asyncio.wait_for(done.wait(), 5)
    assert heard[-1] == ("from async code", True)


def test_every_connection_writes_ahead_and_syncs_each_commit(tmp_path) -> None:
    # what Factory acknowledged (a task, an answer, a message) survives a power cut, not only a crash
    engine = _engine(tmp_path)
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_a_finished_task_never_goes_back_to_running(tmp_path) -> None:
    engine = _engine(tmp_path)
    with session_scope(engine) as s:
        s.add(Task(id=1, title="t", repo="r", status=TaskStatus.done))
        s.commit()
    for status in (TaskStatus.in_progress, TaskStatus.awaiting_input, TaskStatus.queued):
        assert update_task(engine, TaskUpdate(task_id=1, status=status)).status == TaskStatus.done
    assert update_task(engine, TaskUpdate(task_id=1, status=TaskStatus.failed)).status == TaskStatus.failed
    assert FINISHED == {"done", "failed", "cancelled"}


def test_log_lines_are_scrubbed_and_cut(tmp_path) -> None:
    engine = _engine(tmp_path)
    add_log(engine, 1, "assistant", "token s3cr3t-value " + "x" * 2 * MAX_LOG_CHARS, secrets=["s3cr3t-value"])
    with session_scope(engine) as s:
        (row,) = s.exec(select(TaskLog)).all()
    assert "s3cr3t-value" not in row.content and row.content.startswith("token ***")
    assert len(row.content) < MAX_LOG_CHARS + 40 and row.content.endswith("more characters]")


def test_branch_indexes_reach_an_existing_database(tmp_path) -> None:
    _engine(tmp_path).dispose()
    db = sqlite3.connect(tmp_path / "factory.db")
    db.execute("DROP INDEX ix_task_branch")
    db.execute("DROP INDEX ix_workflowrun_branch")
    db.execute("DROP TABLE alembic_version")  # older: made by create_all, before migrations
    db.commit()
    _engine(tmp_path).dispose()  # as a newer Factory opening an older database
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"ix_task_branch", "ix_workflowrun_branch"} <= names
    plan = " ".join(str(r) for r in db.execute("EXPLAIN QUERY PLAN SELECT id FROM task WHERE branch = 'factory/x'"))
    assert "ix_task_branch" in plan
