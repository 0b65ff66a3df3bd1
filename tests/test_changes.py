"""The live streams wake on new rows (factory/store/changes.py) instead of each waiting out its own period.

Real SQLite; the streams are read from a real uvicorn server. The streams' own periods are set to a
minute here, so a row that arrives in seconds came by a wake, not by a stream's own look.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from api.main import create_app
from api.routes import events as events_route
from api.routes import messages as messages_route
from factory.config import FactoryConfig
from factory.store.changes import ANY, Changes
from factory.store.logsink import LogSink
from factory.store.tables import Message, Task, TaskLog, make_engine
from tests.fakes.http import BackgroundServer
from tests.test_messages import SSE

pytestmark = pytest.mark.fast


def _engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    with Session(engine) as s:
        for i in (1, 2):
            s.add(Task(id=i, title=f"t{i}", description="", repo="demo", agent_type="coder", status="in_progress"))
        s.commit()
    return engine


def _add(engine, row) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        s.add(row)
        s.commit()


async def _looked(changes: Changes, times: int) -> None:
    start, deadline = changes.looks, time.monotonic() + 10
    while changes.looks < start + times:
        assert time.monotonic() < deadline, "nobody looks for new rows"
        await asyncio.sleep(0.01)


def test_a_waiter_wakes_on_its_own_tasks_rows_only(tmp_path: Path) -> None:
    engine = _engine(tmp_path)

    async def main() -> None:
        changes = Changes(engine, tick=0.02)
        follows_1 = asyncio.create_task(changes.wait([1], timeout=60))
        board = asyncio.create_task(changes.wait(ANY, timeout=60))
        await _looked(changes, 2)  # the first look marks where "new" starts
        _add(engine, TaskLog(task_id=2, kind="text", content="not yours"))
        await _looked(changes, 2)
        assert not follows_1.done() and not board.done()  # a log line wakes no message follower either
        _add(engine, TaskLog(task_id=1, kind="text", content="yours"))
        assert await asyncio.wait_for(follows_1, 10) is True
        assert not board.done()
        _add(engine, Message(sender="ana", content="to everyone"))  # no task: the board's
        assert await asyncio.wait_for(board, 10) is True
        # a message of a followed task wakes that task's waiter too; time running out says False
        again = asyncio.create_task(changes.wait([2], timeout=60))
        await _looked(changes, 1)
        _add(engine, Message(sender="coder", content="about task 2", task_id=2))
        assert await asyncio.wait_for(again, 10) is True
        assert await changes.wait([1], timeout=0.05) is False
        # nobody waits: it stops looking
        looks = changes.looks
        await asyncio.sleep(0.2)
        assert changes.looks <= looks + 1

    asyncio.run(main())


async def test_open_streams_get_new_rows_without_waiting_out_their_period(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FACTORY_AUTH_TOKEN", raising=False)
    monkeypatch.setattr(events_route, "POLL_SECONDS", 60.0)
    monkeypatch.setattr(messages_route, "POLL_SECONDS", 60.0)
    engine = _engine(tmp_path)
    cfg = FactoryConfig(data_dir=str(tmp_path), database_url=f"sqlite:///{tmp_path}/f.db")
    app = create_app(cfg, engine=engine, connect_temporal=False)
    with BackgroundServer(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=None)) as c:
            async with c.stream("GET", "/api/events", params={"task_id": 1}) as page:
                task = SSE(page)
                try:
                    await task.until(lambda d: isinstance(d, list))  # the round's questions: the first pass is done
                    await _looked(app.state.changes, 2)
                    sink = LogSink(engine, interval=0.01)
                    sink.add(1, "text", "printed just now")
                    await sink.flush()
                    ev = await task.until(lambda d: isinstance(d, dict) and d.get("content") == "printed just now")
                    assert ev["event"] == "log"
                finally:
                    task.task.cancel()
            async with c.stream("GET", "/api/messages/stream/sse") as board_resp:
                board = SSE(board_resp)
                try:
                    await _looked(app.state.changes, 2)
                    _add(engine, Message(sender="ana", content="hello board"))
                    assert (await board.until(lambda d: d["content"] == "hello board"))["event"] == "message"
                finally:
                    board.task.cancel()
