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


def test_a_look_serves_the_rows_it_read_only_to_a_stream_it_covers(tmp_path: Path) -> None:
    engine = _engine(tmp_path)

    async def main() -> None:
        changes = Changes(engine, tick=0.02)
        waiting = asyncio.create_task(changes.wait([1], timeout=60))
        await _looked(changes, 2)
        since = changes.mark()
        assert since is not None
        for i in range(3):
            _add(engine, TaskLog(task_id=1 + i % 2, kind="text", content=f"line {i}"))
        assert await asyncio.wait_for(waiting, 10) is True
        look = changes.last
        assert look is not None and look.since == since
        served = changes.served([1], 0, 0, since)
        assert served is not None
        logs, msgs, covered = served
        assert [r.content for r in logs] == ["line 0", "line 2"] and msgs == [] and covered == look.upto
        assert changes.served([1], logs[0].id, 0, since)[0] == logs[1:]  # type: ignore[index]  # after the cursor
        # a reader that has not read up to where the look starts, or follows a task the look did not: its own read
        assert changes.served([1], 0, 0, (since[0] - 1, since[1])) is None
        assert changes.served([1], 0, 0, None) is None
        assert changes.served([1, 2], 0, 0, since) is None

    asyncio.run(main())


def test_a_stream_busy_through_several_looks_is_still_served_from_them(tmp_path: Path) -> None:
    engine = _engine(tmp_path)

    async def main() -> None:
        changes = Changes(engine, tick=0.02)
        first = asyncio.create_task(changes.wait([1], timeout=60))
        keeps_looking = asyncio.create_task(changes.wait([2], timeout=60))  # another page keeps the looks going
        await _looked(changes, 2)
        _add(engine, TaskLog(task_id=1, kind="text", content="line a"))
        assert await asyncio.wait_for(first, 10) is True
        covered = changes.mark()  # the stream took "line a" from this look and covers up to it
        assert covered is not None
        # the stream sends "line a" and is not waiting while three more lines land, each seen by a later look
        for n in ("b", "c", "d"):
            _add(engine, TaskLog(task_id=1, kind="text", content=f"line {n}"))
            await _looked(changes, 2)
        served = changes.served([1], covered[0], 0, covered)
        assert served is not None, "the looks since the stream last read followed its task and kept its rows"
        logs, _msgs, upto = served
        assert [r.content for r in logs] == ["line b", "line c", "line d"]
        assert upto == changes.last.upto  # type: ignore[union-attr]
        keeps_looking.cancel()

    asyncio.run(main())


async def test_a_stream_gets_every_line_of_its_task_once_in_order_while_they_pour_in(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("FACTORY_AUTH_TOKEN", raising=False)
    engine = _engine(tmp_path)
    cfg = FactoryConfig(data_dir=str(tmp_path), database_url=f"sqlite:///{tmp_path}/f.db")
    app = create_app(cfg, engine=engine, connect_temporal=False)
    want = [f"line {i}" for i in range(0, 400, 2)]
    with BackgroundServer(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=None)) as c:
            async with c.stream("GET", "/api/events", params={"task_id": 1}) as page:
                stream = SSE(page)
                try:
                    sink = LogSink(engine, interval=0.005, max_batch=7)
                    for i in range(400):  # two tasks interleaved, in many small batches, while the stream reads
                        sink.add(1 + i % 2, "text", f"line {i}")
                        if i % 10 == 0:
                            await asyncio.sleep(0.01)
                    await sink.flush()
                    got: list[str] = []
                    while len(got) < len(want):
                        ev = await stream.next(10)
                        if ev.get("event") == "log":
                            got.append(ev["data"]["content"])
                    assert got == want
                    assert app.state.changes.looks > 2  # the looks ran (and served at least some wakes)
                    await stream.nothing_more(1.0)  # nor any line twice
                finally:
                    stream.task.cancel()


async def test_a_page_takes_its_rows_from_the_looks_on_each_state_pass_until_the_round_ends(
    tmp_path: Path, monkeypatch
) -> None:
    """Every state pass (here each 0.05 s) reads the round; only one that may end the stream reads its rows itself.

    The round ends with a line written after the last look: the ending pass must still send it before `end`.
    """
    from factory.store import live

    monkeypatch.delenv("FACTORY_AUTH_TOKEN", raising=False)
    monkeypatch.setattr(events_route, "POLL_SECONDS", 0.05)
    engine = _engine(tmp_path)
    calls = {"state": 0, "rows": 0}
    finish = asyncio.Event()
    real_state, real_rows = live.round_state, live.rows_after

    def state(engine_, task_id):  # type: ignore[no-untyped-def]
        calls["state"] += 1
        if finish.is_set():  # the last line and the end land between two looks, right before this read
            with Session(engine_) as s:
                s.add(TaskLog(task_id=1, kind="text", content="the very last line"))
                task = s.get(Task, 1)
                assert task is not None
                task.status = "done"
                s.commit()
        return real_state(engine_, task_id)

    def rows(*args):  # type: ignore[no-untyped-def]
        calls["rows"] += 1
        return real_rows(*args)

    monkeypatch.setattr(live, "round_state", state)
    monkeypatch.setattr(live, "rows_after", rows)
    cfg = FactoryConfig(data_dir=str(tmp_path), database_url=f"sqlite:///{tmp_path}/f.db")
    app = create_app(cfg, engine=engine, connect_temporal=False)
    with BackgroundServer(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=None)) as c:
            async with c.stream("GET", "/api/events", params={"task_id": 1}) as page:
                stream = SSE(page)
                try:
                    await stream.until(lambda d: isinstance(d, list))
                    _add(engine, TaskLog(task_id=1, kind="text", content="a line"))
                    assert (await stream.until(lambda d: d.get("content") == "a line"))["event"] == "log"
                    passes = calls["state"]
                    while calls["state"] < passes + 20:  # twenty state passes with the task still running
                        await asyncio.sleep(0.02)
                    # before, each pass read the rows itself too; now the looks serve them (a pass the looks do
                    # not cover yet, e.g. the first, still reads)
                    assert calls["rows"] <= calls["state"] // 4, calls
                    finish.set()
                    seen = []
                    while not seen or seen[-1] != "end":
                        ev = await stream.next(10)
                        seen.append(ev["data"].get("content") if ev.get("event") == "log" else ev.get("event"))
                    assert "the very last line" in seen, seen
                finally:
                    stream.task.cancel()
