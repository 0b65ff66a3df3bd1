"""The batched log writer: many runs' lines in few transactions, in order, none lost, nothing leaked."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from factory.store.logsink import LogSink
from factory.store.tables import AgentRun, TaskLog, make_engine, utcnow

pytestmark = pytest.mark.fast


def _rows(engine) -> list[TaskLog]:
    with Session(engine) as s:
        return list(s.exec(select(TaskLog).order_by(col(TaskLog.id))))


def _agent_run(engine) -> AgentRun:
    """A new agent run's row (as the agent activity makes one)."""
    with Session(engine) as s:
        run = AgentRun(task_id=1, agent_type="coder", host="h")
        s.add(run)
        s.commit()
        s.refresh(run)
        return run


def test_lines_of_many_runs_are_written_in_few_transactions_in_order(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")

    async def main() -> LogSink:
        sink = LogSink(engine, interval=0.05)
        for i in range(200):  # 20 runs printing at once, interleaved
            sink.add_many(i % 20 + 1, [("text", f"line {i}")], attempt=1)
            if i % 50 == 0:
                await asyncio.sleep(0)
        await sink.flush()
        return sink

    sink = asyncio.run(main())
    rows = _rows(engine)
    assert [r.content for r in rows] == [f"line {i}" for i in range(200)]
    assert [r.task_id for r in rows] == [i % 20 + 1 for i in range(200)]
    assert sink.writes <= 3  # not one per line


def test_lines_come_in_the_background_without_a_flush(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")

    async def main() -> None:
        sink = LogSink(engine, interval=0.01)
        sink.add(1, "event", "hello")
        for _ in range(500):  # the reader sees it without anyone flushing
            await asyncio.sleep(0.01)
            if _rows(engine):
                return
        raise AssertionError("the line was never written")

    asyncio.run(main())


def test_a_failed_write_keeps_its_lines_in_front_and_the_flush_says_so(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")

    async def main() -> None:
        sink = LogSink(engine, interval=60)
        real = sink._commit
        fail = {"left": 1}

        def flaky(lines, marks):
            if fail["left"]:
                fail["left"] -= 1
                raise RuntimeError("database is locked")
            real(lines, marks)

        sink._commit = flaky  # type: ignore[method-assign]
        sink.add(1, "text", "first")
        with pytest.raises(RuntimeError):
            await sink.flush()
        sink.add(1, "text", "second")
        await sink.flush()

    asyncio.run(main())
    assert [r.content for r in _rows(engine)] == ["first", "second"]


def test_secrets_are_scrubbed_and_run_marks_ride_along(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    run_id = _agent_run(engine).id
    assert run_id is not None

    async def main() -> None:
        sink = LogSink(engine)
        sink.add(1, "text", "token sk-secret-value-123 here", secrets=["sk-secret-value-123"])
        sink.mark(run_id, utcnow(), "x" * 1000)
        await sink.flush()

    asyncio.run(main())
    (row,) = _rows(engine)
    assert "sk-secret-value-123" not in row.content
    with Session(engine) as s:
        got = s.get(AgentRun, run_id)
        assert got is not None and got.last_output_at is not None and got.last_output == "x" * 300

    async def leak() -> None:  # the run's "last output" (GET /api/agents) is scrubbed too
        sink = LogSink(engine)
        sink.mark(run_id, utcnow(), "my key is sk-secret-value-123", secrets=["sk-secret-value-123"])
        await sink.flush()

    asyncio.run(leak())
    with Session(engine) as s:
        got = s.get(AgentRun, run_id)
        assert got is not None and got.last_output and "sk-secret-value-123" not in got.last_output


def test_batched_lines_reach_the_live_stream_and_the_logs_route_in_order(tmp_path: Path, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app
    from factory.config import FactoryConfig
    from factory.store.tables import Task

    monkeypatch.delenv("FACTORY_AUTH_TOKEN", raising=False)
    cfg = FactoryConfig(data_dir=str(tmp_path), database_url=f"sqlite:///{tmp_path}/f.db")
    engine = make_engine(cfg.db_url)
    with Session(engine) as s:
        for i in (1, 2):
            s.add(Task(id=i, title=f"t{i}", description="", repo="demo", agent_type="coder", status="done"))
        s.commit()

    async def write() -> None:
        sink = LogSink(engine, interval=0.01, max_batch=7)  # several batches, two runs interleaved
        for i in range(60):
            sink.add(1 + i % 2, "text", f"line {i}")
            if i % 9 == 0:
                await asyncio.sleep(0.02)
        await sink.flush()

    asyncio.run(write())
    with TestClient(create_app(cfg, engine=engine, connect_temporal=False)) as c:
        sse = c.get("/api/events?task_id=2").text
        logs = c.get("/api/tasks/2/logs", params={"limit": 2000}).json()
    streamed = [
        json.loads(line[5:])["content"] for line in sse.splitlines() if line.startswith("data:") and '"kind"' in line
    ]
    want = [f"line {i}" for i in range(1, 60, 2)]
    assert streamed == want and [r["content"] for r in logs] == want
    assert "event: end" in sse


def test_a_runs_end_is_written_with_its_last_lines_in_one_transaction(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    run = _agent_run(engine)
    assert run.id is not None and run.ended_at is None
    ended = utcnow()

    async def main() -> LogSink:
        sink = LogSink(engine, interval=10)  # no window ends by itself: only the flush writes
        sink.add(1, "text", "the last line")
        sink.end(run.id, ended)
        await sink.flush()
        return sink

    sink = asyncio.run(main())
    assert sink.writes == 1
    assert [r.content for r in _rows(engine)] == ["the last line"]
    with Session(engine) as s:
        stored = s.get(AgentRun, run.id)
        assert stored is not None and stored.ended_at is not None
        assert stored.ended_at.replace(tzinfo=None) == ended.replace(tzinfo=None)
