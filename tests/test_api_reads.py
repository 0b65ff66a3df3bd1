"""The reads a dashboard or script polls (`GET /api/tasks`, one task, its logs after a cursor).

On SQLite they run on the API's event loop (`api.deps.read_now`): a thread hop each way cost more CPU than
the read (bench/LOAD.md). On PostgreSQL a read waits on the network, so it keeps its worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event
from sqlmodel import Session

from api.deps import read_now
from api.main import create_app
from factory.config import FactoryConfig
from factory.store.tables import Task, TaskLog, make_engine

pytestmark = pytest.mark.fast


def _site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FactoryConfig, object]:
    monkeypatch.delenv("FACTORY_AUTH_TOKEN", raising=False)
    cfg = FactoryConfig(data_dir=str(tmp_path), database_url=f"sqlite:///{tmp_path}/f.db")
    engine = make_engine(cfg.db_url)
    with Session(engine) as s:
        for i in (1, 2, 3):
            s.add(Task(id=i, title=f"t{i}", description="", repo="demo", agent_type="coder", status="in_progress"))
        for n in range(7):
            s.add(TaskLog(task_id=1 + n % 2, kind="assistant", content=f"line {n}"))
        s.commit()
    return cfg, engine


def test_the_logs_route_pages_by_cursor_and_tells_a_missing_task_from_an_empty_page(tmp_path, monkeypatch) -> None:
    cfg, engine = _site(tmp_path, monkeypatch)
    with TestClient(create_app(cfg, engine=engine, connect_temporal=False)) as c:
        first = c.get("/api/tasks/1/logs", params={"limit": 2}).json()
        assert [r["content"] for r in first] == ["line 0", "line 2"]
        rest = c.get("/api/tasks/1/logs", params={"since": first[-1]["id"]}).json()
        assert [r["content"] for r in rest] == ["line 4", "line 6"]
        assert {r["task_id"] for r in first + rest} == {1}
        # past the last line: an empty page of a task that exists; a task with no lines at all: the same
        assert c.get("/api/tasks/1/logs", params={"since": rest[-1]["id"]}).json() == []
        assert c.get("/api/tasks/3/logs").json() == []
        # a task that does not exist is a 404 naming it, with or without a cursor
        for params in ({}, {"since": 1}):
            r = c.get("/api/tasks/4/logs", params=params)
            assert r.status_code == 404 and "task 4 not found" in r.text
        assert c.get("/api/tasks/4").status_code == 404
        assert [t["id"] for t in c.get("/api/tasks").json()] == [3, 2, 1]
        assert c.get("/api/tasks/2").json()["status"] == "in_progress"


def test_polled_reads_run_on_the_event_loop_with_sqlite(tmp_path, monkeypatch) -> None:
    cfg, engine = _site(tmp_path, monkeypatch)
    threads: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *_: threads.append(threading.current_thread().name))
    with TestClient(create_app(cfg, engine=engine, connect_temporal=False)) as c:
        threads.clear()
        for path in ("/api/tasks", "/api/tasks/1", "/api/tasks/1/logs", "/api/tasks/3/logs"):
            assert c.get(path).status_code == 200, path
    assert threads, "no query seen"
    # FastAPI runs a plain `def` route in anyio's worker threads; these reads must not hop there
    assert not [t for t in threads if t.startswith("AnyIO worker")], threads


def test_a_personal_tokens_lookup_runs_on_the_event_loop_with_sqlite(tmp_path, monkeypatch) -> None:
    from pydantic import SecretStr

    from factory.auth.people import create_token, create_user

    cfg, engine = _site(tmp_path, monkeypatch)
    cfg = cfg.model_copy(update={"factory_auth_token": SecretStr("bootstrap-token-for-this-test-only-0123456789")})
    user = create_user(engine, "ana", "viewer")
    assert user.id is not None
    _row, token = create_token(engine, user.id, "read", None)
    threads: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *_: threads.append(threading.current_thread().name))
    with TestClient(create_app(cfg, engine=engine, connect_temporal=False)) as c:
        assert c.get("/api/tasks/1/logs").status_code == 401
        threads.clear()
        assert c.get("/api/tasks/1/logs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/api/tasks/1/logs", headers={"Authorization": "Bearer fct_nope_nope"}).status_code == 401
    assert len(threads) >= 3, threads  # the token, its user, the lines
    assert not [t for t in threads if t.startswith("AnyIO worker")], threads


def test_a_read_on_postgresql_keeps_its_worker_thread() -> None:
    # the engine is never connected: read_now only looks at its dialect
    engine = create_engine("postgresql+psycopg://factory@127.0.0.1:1/none")

    async def main() -> tuple[int, int]:
        with Session(engine) as s:
            here = threading.get_ident()
            return here, await read_now(s, lambda _s: threading.get_ident())

    loop_thread, read_thread = asyncio.run(main())
    assert read_thread != loop_thread


def test_a_read_on_sqlite_runs_where_it_is_awaited(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/f.db")

    async def main() -> tuple[int, int]:
        with Session(engine) as s:
            return threading.get_ident(), await read_now(s, lambda _s: threading.get_ident())

    loop_thread, read_thread = asyncio.run(main())
    assert read_thread == loop_thread


def test_a_read_never_waits_on_the_pool_on_the_event_loop(tmp_path) -> None:
    """A plain `def` route gives its connection back only when the loop closes its session: with the pool drained,
    a read on the loop would wait on them (for the pool's 30 s) while they wait on the loop."""
    engine = make_engine(f"sqlite:///{tmp_path}/f.db")
    held = []
    try:
        while engine.pool.checkedin() or engine.pool.overflow() < engine.pool._max_overflow:  # type: ignore[attr-defined]
            held.append(engine.connect())  # every connection the pool can give, held as such routes hold them
            held[-1].exec_driver_sql("SELECT 1")

        async def main() -> tuple[int, int]:
            with Session(engine) as s:
                return threading.get_ident(), await read_now(s, lambda _s: threading.get_ident())

        loop_thread, read_thread = asyncio.run(main())
        assert read_thread != loop_thread  # it went to a worker thread, which may wait without stopping the loop
    finally:
        for c in held:
            c.close()


def test_a_pages_tool_call_count_reads_the_kind_index_not_every_line(tmp_path) -> None:
    from alembic import command
    from sqlalchemy import text

    from factory.store import live
    from factory.store.schema import alembic_config, current_revision

    url = f"sqlite:///{tmp_path}/old.db"
    old = create_engine(url)
    with old.begin() as conn:  # a database from before the index (migration 0005)
        command.upgrade(alembic_config(conn), "0004")
    engine = make_engine(url)  # upgrades it
    assert current_revision(engine) >= "0005"
    seen: list[tuple[str, object]] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, params, *_: seen.append((sql, params)))
    with Session(engine) as s:
        s.add(Task(id=1, title="t", description="", repo="demo", agent_type="coder"))
        s.add_all(TaskLog(task_id=1, kind="tool_use" if n % 3 == 0 else "assistant", content="x") for n in range(9))
        s.commit()
        seen.clear()
        assert live.tool_turns(s, [1]) == {1: 3}
        sql, params = seen[-1]
        plan = " ".join(str(row[-1]) for row in s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "COVERING INDEX ix_tasklog_task_id_kind" in plan, plan
    with old.connect() as conn:
        assert conn.execute(text("SELECT name FROM sqlite_master WHERE name = 'ix_tasklog_task_id_kind'")).first()
