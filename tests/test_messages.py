"""The message board: agents' message lines, the REST filters and threads, the live SSE stream,
delivery to the next run of the addressed agent, auth and the off switch.

Real Temporal, the real `claude` CLI against the scripted model server; the SSE stream is read
from a real uvicorn server (httpx's ASGITransport does not stream).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx

from api.routes import messages as messages_route
from tests.conftest import ROOT
from tests.fakes.anthropic import RecordedRequest, Stall, Text, ToolUse
from tests.fakes.http import BackgroundServer


def msg_line(content: str, to: str | None = None, message_type: str = "info", **extra: Any) -> str:
    line: dict[str, Any] = {"type": "message", "content": content, "message_type": message_type, **extra}
    if to:
        line["to"] = to
    return json.dumps(line)


def speaks_then_stalls(*lines: str) -> list[Any]:
    """Print message lines, read a file (so the run goes on), then stall until released."""
    return [
        [Text("\n".join(["Working on it.", *lines])), ToolUse("Read", {"file_path": "README.md"})],
        Stall(60, then="Finished."),
    ]


class SSE:
    """A minimal server-sent events reader: a task parses the stream into a queue of events."""

    def __init__(self, resp: httpx.Response):
        assert resp.status_code == 200, resp.status_code
        assert resp.headers["content-type"].startswith("text/event-stream")
        self.resp = resp
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.comments: list[str] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        ev: dict[str, Any] = {}
        data: list[str] = []
        async for line in self.resp.aiter_lines():
            if line == "":
                if data:
                    await self.events.put({**ev, "data": json.loads("\n".join(data)), "at": time.time()})
                ev, data = {}, []
            elif line.startswith(":"):
                self.comments.append(line[1:].strip())
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                else:
                    ev[name] = value

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        """The next event: id, event, data (parsed JSON) and the time it arrived."""
        return await asyncio.wait_for(self.events.get(), timeout)

    async def until(self, predicate: Any, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            ev = await self.next(max(0.01, deadline - time.monotonic()))
            if predicate(ev["data"]):
                return ev

    async def nothing_more(self, within: float) -> None:
        try:
            ev = await self.next(within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected event {ev}")


@asynccontextmanager
async def sse(url: str, headers: dict[str, str] | None = None, **params: Any) -> AsyncIterator[SSE]:
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=None)) as c:
        async with c.stream("GET", "/api/messages/stream/sse", params=params, headers=headers or {}) as resp:
            reader = SSE(resp)
            try:
                yield reader
            finally:
                reader.task.cancel()
                await asyncio.gather(reader.task, return_exceptions=True)


def delay_of(ev: dict[str, Any]) -> float:
    created = datetime.fromisoformat(ev["data"]["created_at"]).timestamp()
    return ev["at"] - created


# --------------------------------------------------------------------------------------------------


async def test_agent_lines_reach_the_board_as_printed_with_filters_and_threads(start_factory, model):
    model.add_scenario(
        "chatty",
        speaks_then_stalls(
            msg_line("Parsing the config now", to="user", message_type="status"),
            msg_line("Please look at the RETRY logic", to="reviewer", message_type="handoff"),
        ),
    )
    async with start_factory() as h:
        t = await h.create("Parse the config", "chatty")
        tid = t["id"]

        async def agent_messages() -> list[dict[str, Any]]:
            r = await h.api.get("/api/messages", params={"task_id": tid, "agent": "coder"})
            return r.json()

        # stored while the agent still runs (read from the stream, not at the end)
        found = await h.until(lambda: _two(agent_messages), timeout=60, what="the agent's messages")
        assert (await h.task(tid))["status"] == "in_progress"
        handoff, status = found  # newest first
        assert (status["sender"], status["to"], status["message_type"]) == ("coder", "user", "status")
        assert (handoff["sender"], handoff["to"], handoff["message_type"]) == ("coder", "reviewer", "handoff")
        assert handoff["content"] == "Please look at the RETRY logic" and handoff["task_id"] == tid
        assert handoff["id"] > status["id"] and handoff["created_at"].endswith("+00:00")
        await h.until(lambda: len(model.requests_for("chatty")) >= 2, what="the stalled turn")
        model.release_stalls()
        assert (await h.wait_for(tid, {"done", "failed"}))["status"] == "done"

        other = await h.create("Another task", "none", run=False)
        posted = []
        for body in (
            {"sender": "ana", "to": "coder", "content": "Use the STAGING config", "task_id": tid},
            {"sender": "ana", "content": "100% sure?", "message_type": "question", "task_id": other["id"]},
            {"sender": "reviewer", "to": "coder", "content": "Looks fine", "message_type": "info"},
        ):
            r = await h.api.post("/api/messages", json=body)
            assert r.status_code == 201, r.text
            posted.append(r.json())
        staging, percent, from_reviewer = posted

        async def ids(**params: Any) -> list[int]:
            r = await h.api.get("/api/messages", params=params)
            assert r.status_code == 200, r.text
            return [m["id"] for m in r.json()]

        all_ids = await ids(limit=500)
        assert all_ids == sorted(all_ids, reverse=True)  # newest first
        task_ids = await ids(task_id=tid)
        assert {handoff["id"], status["id"], staging["id"]} <= set(task_ids)
        assert percent["id"] not in task_ids and from_reviewer["id"] not in task_ids
        assert any(m["sender"] == "factory" for m in (await h.api.get("/api/messages", params={"task_id": tid})).json())
        assert await ids(message_type="question") == [percent["id"]]
        assert await ids(agent="reviewer") == [from_reviewer["id"], handoff["id"]]  # sender or recipient
        assert await ids(search="staging") == [staging["id"]]  # any case
        assert await ids(search="retry LOGIC", task_id=tid) == [handoff["id"]]
        assert await ids(search="100%") == [percent["id"]]  # % is literal, not a wildcard
        assert await ids(search="0%", task_id=tid) == []
        assert await ids(before=staging["id"], limit=2) == [i for i in all_ids if i < staging["id"]][:2]
        assert len(await ids(limit=1)) == 1

        # threads: replies inherit the task; the thread is the root and every reply, oldest first
        r1 = await h.api.post(
            "/api/messages", json={"sender": "ana", "content": "Which part?", "reply_to": handoff["id"]}
        )
        assert r1.status_code == 201 and r1.json()["task_id"] == tid
        r2 = await h.api.post(
            "/api/messages", json={"sender": "coder", "content": "The backoff", "reply_to": r1.json()["id"]}
        )
        assert r2.status_code == 201
        expected = [handoff["id"], r1.json()["id"], r2.json()["id"]]
        for start in expected:
            thread = (await h.api.get(f"/api/messages/{start}/thread")).json()
            assert [m["id"] for m in thread] == expected
        assert [m["id"] for m in (await h.api.get(f"/api/messages/{staging['id']}/thread")).json()] == [staging["id"]]
        one = (await h.api.get(f"/api/messages/{r2.json()['id']}")).json()
        assert one["reply_to"] == r1.json()["id"] and one["content"] == "The backoff"

        # refusals
        assert (await h.api.get("/api/messages/999999")).status_code == 404
        assert (await h.api.get("/api/messages/999999/thread")).status_code == 404
        r = await h.api.post("/api/messages", json={"content": "x", "reply_to": 999999})
        assert r.status_code == 404 and "message 999999" in r.json()["detail"]
        r = await h.api.post("/api/messages", json={"content": "x", "task_id": 999999})
        assert r.status_code == 404 and "task 999999" in r.json()["detail"]
        r = await h.api.post("/api/messages", json={"content": "x", "workflow_id": 999999})
        assert r.status_code == 404
        r = await h.api.post("/api/messages", json={"content": "x", "message_type": "shout"})
        assert r.status_code == 422 and "message_type" in r.json()["detail"]
        r = await h.api.post("/api/messages", json={"content": "   "})
        assert r.status_code == 422
        assert (await h.api.get("/api/messages", params={"message_type": "shout"})).status_code == 422


async def _two(fetch: Any) -> list[dict[str, Any]] | None:
    rows = await fetch()
    return rows if len(rows) >= 2 else None


async def test_sse_delivers_within_a_second_resumes_and_keeps_alive(start_factory, model, monkeypatch):
    monkeypatch.setattr(messages_route, "PING_SECONDS", 0.5)
    model.add_scenario("live", speaks_then_stalls(msg_line("live from the agent", to="user", message_type="status")))
    async with start_factory() as h:
        with BackgroundServer(h.app) as url:
            async with sse(url) as stream:
                t = await h.create("Talk live", "live")
                ev = await stream.until(lambda m: m["content"] == "live from the agent", timeout=60)
                assert delay_of(ev) < 1.0, delay_of(ev)
                assert ev["event"] == "message" and ev["id"] == str(ev["data"]["id"])
                assert ev["data"]["task_id"] == t["id"] and ev["data"]["sender"] == "coder"

                # a message stored by another process (as a worker on another host would) arrives too
                code = (
                    "from factory.store.tables import make_engine; from factory.store.board import Board; "
                    f"Board(make_engine({h.cfg.db_url!r})).post(sender='devops', content='from another process', "
                    f"task_id={t['id']})"
                )
                subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
                ev2 = await stream.until(lambda m: m["content"] == "from another process", timeout=5)
                assert delay_of(ev2) < 1.0, delay_of(ev2)
                assert int(ev2["id"]) > int(ev["id"])
                # keep-alive comments while nothing happens
                await h.until(lambda: any(c.startswith("ping") for c in stream.comments), timeout=5, what="a ping")
                assert stream.comments[0] == "connected"
            await h.until(lambda: len(model.requests_for("live")) >= 2, what="the stalled turn")
            model.release_stalls()
            await h.wait_for(t["id"], {"done", "failed"})

            # posting through the API streams too; filters apply to the stream
            posted = []
            for i in range(3):
                r = await h.api.post(
                    "/api/messages", json={"sender": "ana", "content": f"resume {i}", "task_id": t["id"]}
                )
                posted.append(r.json()["id"])
            first, second, third = posted
            async with sse(url, headers={"Last-Event-ID": str(first)}) as stream:
                got = [(await stream.next())["data"]["id"] for _ in range(2)]
                assert got == [second, third]  # only newer ones, in order
                await stream.nothing_more(within=1)
            async with sse(url, last_id=second) as stream:  # the query fallback
                assert (await stream.next())["data"]["id"] == third
            async with sse(url, headers={"Last-Event-ID": str(second)}, last_id=0) as stream:  # the header wins
                assert (await stream.next())["data"]["id"] == third
            async with sse(url, last_id=0, task_id=t["id"], agent="ana", search="RESUME") as stream:
                assert [(await stream.next())["data"]["id"] for _ in range(3)] == posted
                await stream.nothing_more(within=0.6)
            async with sse(url, message_type="error") as stream:  # a new stream starts from now
                await h.api.post("/api/messages", json={"content": "not an error", "task_id": t["id"]})
                r = await h.api.post("/api/messages", json={"content": "an error", "message_type": "error"})
                ev = await stream.next()
                assert ev["data"]["id"] == r.json()["id"]
                assert delay_of(ev) < 1.0


def _is_reviewer(rec: RecordedRequest) -> bool:
    return "You are Factory's reviewer agent" in rec.system


async def test_a_message_to_the_reviewer_reaches_the_reviewers_next_prompt(start_factory, model):
    note = "Careful: the retry loop in fetch.py needs a cap"

    def first_turn(rec: RecordedRequest) -> Any:
        if _is_reviewer(rec):
            return Text('Looks right.\n{"verdict": "approved", "issues": []}')
        return [
            Text("Writing it.\n" + msg_line(note, to="reviewer", message_type="handoff")),
            ToolUse("Write", {"file_path": "fetch.py", "content": "RETRIES = 3\n"}),
        ]

    model.add_scenario("wf-note", [first_turn, Text("Added fetch.py with a retry cap.")])
    async with start_factory() as h:
        r = await h.api.post(
            "/api/workflows/code_review",
            json={"title": "Add fetch", "description": "[[scenario:wf-note]]", "repo": "demo"},
        )
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]

        async def finished() -> dict[str, Any] | None:
            run = (await h.api.get(f"/api/workflows/{run_id}")).json()
            return run if run["status"] in ("completed", "failed", "cancelled") else None

        run = await h.until(finished, timeout=90, what="the workflow to finish")
        assert run["status"] == "completed", run
        reqs = model.requests_for("wf-note")
        coder = [q for q in reqs if not _is_reviewer(q)]
        reviewer = [q for q in reqs if _is_reviewer(q)]
        assert coder and reviewer
        assert note not in coder[0].all_text
        assert "Messages for you on the message board" in reviewer[0].all_text
        assert note in reviewer[0].first_user_text
        msgs = (await h.api.get("/api/messages", params={"workflow_id": run_id, "agent": "reviewer"})).json()
        [m] = [m for m in msgs if m["content"] == note]
        assert m["sender"] == "coder" and m["delivered_at"] is not None
        # a person's message about a step's task joins that task's workflow (so its agents get it)
        r = await h.api.post("/api/messages", json={"to": "reviewer", "content": "x", "task_id": m["task_id"]})
        assert r.status_code == 201 and r.json()["workflow_id"] == run_id


async def test_messages_for_a_task_reach_its_agent_at_start_and_on_resume(start_factory, model):
    model.add_scenario(
        "inbox",
        [Text('{"type": "question", "question": "Which name?"}'), Text("Named it.")],
    )
    async with start_factory() as h:
        t = await h.create("Name it", "inbox", run=False)
        r = await h.api.post(
            "/api/messages", json={"sender": "ana", "to": "coder", "content": "Prefer short names", "task_id": t["id"]}
        )
        assert r.status_code == 201
        r = await h.api.post(
            "/api/messages",
            json={"sender": "ana", "to": "reviewer", "content": "not for the coder", "task_id": t["id"]},
        )
        assert (await h.api.post(f"/api/tasks/{t['id']}/run")).status_code == 202
        await h.wait_for(t["id"], "awaiting_input")
        first = model.requests_for("inbox")[0]
        assert "Prefer short names" in first.first_user_text and "not for the coder" not in first.all_text
        await h.api.post(
            "/api/messages",
            json={"sender": "bo", "to": "coder", "content": "Also: no abbreviations", "task_id": t["id"]},
        )
        assert (await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "fetcher"})).status_code == 200
        assert (await h.wait_for(t["id"], {"done", "failed"}))["status"] == "done"
        resumed = model.requests_for("inbox")[1]
        assert "fetcher" in resumed.last_user_text and "Also: no abbreviations" in resumed.last_user_text
        assert resumed.last_user_text.count("Prefer short names") == 0  # delivered once


async def test_auth_guards_the_board_and_its_stream(start_factory, monkeypatch):
    monkeypatch.setenv("FACTORY_AUTH_TOKEN", "board-token-123")
    async with start_factory(worker=False) as h:
        assert h.cfg.factory_auth_token is not None
        anon = httpx.AsyncClient(transport=httpx.ASGITransport(app=h.app), base_url="http://factory")
        async with anon:
            assert (await anon.get("/api/messages/stream/sse")).status_code == 401
            r = await anon.get("/api/messages/stream/sse", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
            assert (await anon.get("/api/messages")).status_code == 401
            assert (await anon.post("/api/messages", json={"content": "hi"})).status_code == 401
            page = await anon.get("/messages")  # the page holds no data; its script asks for the token
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert (await anon.get("/static/messages.js")).status_code == 200
            assert (await anon.get("/static/..%2Fmain.py")).status_code == 404
        with BackgroundServer(h.app) as url:
            async with sse(url, headers={"Authorization": "Bearer board-token-123"}) as stream:
                r = await h.api.post("/api/messages", json={"content": "with the token"})
                assert r.status_code == 201
                assert (await stream.next())["data"]["content"] == "with the token"


async def test_a_disabled_board_refuses_posts_and_hides_the_page(start_factory):
    async with start_factory(worker=False, message_board={"enabled": False}) as h:
        r = await h.api.post("/api/messages", json={"content": "hello"})
        assert r.status_code == 409 and "message_board.enabled" in r.json()["detail"]
        assert (await h.api.get("/messages")).status_code == 404
        assert h.app.state.board.post(sender="coder", content="dropped") is None
        assert (await h.api.get("/api/messages")).json() == []
