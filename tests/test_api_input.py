"""Bad input gets a clear 4xx, in FastAPI's `{"detail": ...}` shape, and nothing is written.

Ids past SQLite's 64-bit range, NaN and lone surrogates in JSON, Unicode digits as a stream cursor,
NUL in a memory note, oversized bodies (declared or chunked), bad JSON without a token, and a
task started while Temporal is down. Also: `/openapi.json` says what the API really answers.
Real Temporal, real SQLite, real SurrealDB (embedded), the app over ASGI.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import Session, select
from temporalio.client import Client

from api.main import create_app
from factory.store.tables import Handoff, Message, Task, WorkflowRun
from temporal.client import data_converter
from tests.fakes.anthropic import Text

TOKEN = "input-token-9d2c41e7b0"
BIG = 2**63  # one past SQLite's largest INTEGER
HUGE = 10**40


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("FACTORY_AUTH_TOKEN", TOKEN)
    return TOKEN


def rows(h: Any) -> dict[str, int]:
    """How many rows each table people write to holds."""
    with Session(h.runtime.engine) as s:
        return {
            t.__name__: s.exec(select(func.count()).select_from(t)).one() for t in (Task, Message, Handoff, WorkflowRun)
        }


def problem(r: httpx.Response, status: int, *fragments: str) -> str:
    """Assert a 4xx in FastAPI's shape naming the problem; the detail."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail, r.text
    for f in fragments:
        assert f in detail, (f, detail)
    return detail


ID_PROBES = [
    ("GET", f"/api/tasks/{BIG}", None, "task_id"),
    ("GET", "/api/tasks/-1", None, "task_id"),
    ("GET", f"/api/tasks/{HUGE}", None, "task_id"),
    ("POST", f"/api/tasks/{BIG}/run", None, "task_id"),
    ("POST", f"/api/tasks/{BIG}/cancel", None, "task_id"),
    ("POST", f"/api/tasks/{BIG}/answer", {"answer": "yes"}, "task_id"),
    ("GET", f"/api/tasks/{BIG}/logs", None, "task_id"),
    ("GET", f"/api/tasks/1/logs?since={BIG}", None, "since"),
    ("GET", f"/api/workflows/{BIG}", None, "run_id"),
    ("POST", f"/api/workflows/{BIG}/cancel", None, "run_id"),
    ("GET", f"/api/handoffs/{BIG}", None, "handoff_id"),
    ("GET", f"/api/handoffs?task_id={BIG}", None, "task_id"),
    ("GET", f"/api/messages/{BIG}", None, "message_id"),
    ("GET", f"/api/messages/{BIG}/thread", None, "message_id"),
    ("GET", f"/api/messages?before={BIG}", None, "before"),
    ("GET", f"/api/messages?task_id={HUGE}", None, "task_id"),
    ("GET", f"/api/environments?task_id={BIG}", None, "task_id"),
    ("POST", "/api/messages", {"content": "hi", "task_id": BIG}, "task_id"),
    ("POST", "/api/messages", {"content": "hi", "reply_to": -5}, "reply_to"),
    ("POST", "/api/messages", {"content": "hi", "workflow_id": HUGE}, "workflow_id"),
    ("POST", "/api/handoffs", {"from_task_id": BIG, "to_agent": "reviewer"}, "from_task_id"),
    ("POST", "/api/tasks/1/answer", {"answer": "yes", "question_id": BIG}, "question_id"),
]


async def test_ids_past_64_bits_are_a_422_naming_the_parameter(start_factory, token):
    async with start_factory(worker=False) as h:
        before = rows(h)
        for method, url, body, name in ID_PROBES:
            r = await h.api.request(method, url, json=body)
            problem(r, 422, name)
        assert rows(h) == before


async def test_a_bad_stream_cursor_is_refused_before_the_stream_starts(start_factory, token):
    async with start_factory(worker=False) as h:
        cases = [({"Last-Event-ID": "²".encode("latin-1")}, {}), ({"Last-Event-ID": str(BIG)}, {}), ({"Last-Event-ID": "-1"}, {}),
                 ({"Last-Event-ID": "12abc"}, {}), ({}, {"last_id": BIG}), ({}, {"last_id": -1})]  # fmt: skip
        for headers, params in cases:
            # a 200 would be an endless stream: the wait_for turns that into a failure, not a hang
            r = await asyncio.wait_for(h.api.get("/api/messages/stream/sse", headers=headers, params=params), 10)
            problem(r, 422, "Last-Event-ID" if headers else "last_id")


def raw(text: str) -> dict[str, str]:
    return {"content": text}


async def test_json_that_json_cannot_carry_is_a_422_that_echoes_little(start_factory, token):
    async with start_factory(worker=False) as h:
        before = rows(h)
        headers = {"Content-Type": "application/json"}
        bodies = {
            '{"title": NaN, "repo": "demo"}': "NaN",
            '{"title": "x", "repo": "demo", "extra": Infinity}': "Infinity",
            '{"title": "x", "repo": "demo", "agent_type": -Infinity}': "Infinity",
            '{"content": "hi", "task_id": NaN}': "NaN",
            '{"title": "\\ud800", "repo": "demo"}': "title",
            '{"title": "ok", "repo": "\\udfff"}': "repo",
            '{"title": ': "invalid JSON",
        }
        for body, fragment in bodies.items():
            url = "/api/messages" if "content" in body else "/api/tasks"
            problem(await h.api.post(url, content=body, headers=headers), 422, fragment)
        # not UTF-8 at all
        problem(await h.api.post("/api/tasks", content=b'{"title": "\xff\xfe"}', headers=headers), 422, "UTF-8")
        # a title of 600,000 characters (under the body cap): named, but not echoed back whole
        for body in ({"title": "t" * 600_000, "repo": "demo"}, {"title": "t" * 600_000}):
            r = await h.api.post("/api/tasks", json=body)
            problem(r, 422, "title" if "repo" in body else "repo")
            assert len(r.content) < 5_000, len(r.content)
        assert rows(h) == before


async def test_unknown_query_parameters_and_statuses_are_named(start_factory, token):
    async with start_factory(worker=False) as h:
        problem(await h.api.get("/api/tasks?stauts=done"), 422, "stauts", "unknown parameter", "status")
        problem(await h.api.get("/api/tasks?limit=1&limit=2"), 422, "limit", "2 times")
        problem(await h.api.get("/api/tasks?status=bogus"), 422, "status", "queued")
        problem(await h.api.get("/api/workflows?status=bogus"), 422, "status", "pending")
        assert (await h.api.get("/api/tasks?status=queued")).json() == []


async def test_memory_notes_with_nul_surrogates_or_no_end_are_a_422(start_factory, token):
    async with start_factory(worker=False, memory={"enabled": True}) as h:
        cases = [
            ({"repo": "demo", "content": "before\x00after"}, "NUL"),
            ({"repo": "demo", "content": "ok", "title": "t\x00"}, "NUL"),
            ({"repo": "demo", "content": "ok", "learnings": ["fine", "bad\x00"]}, "NUL"),
            ({"repo": "demo", "content": "x" * 50_001}, "content"),
            ({"repo": "demo", "content": "ok", "learnings": ["l"] * 51}, "learnings"),
            ({"repo": "demo", "content": "ok", "learnings": ["l" * 2_001]}, "learnings"),
            ({"repo": "r" * 301, "content": "ok"}, "repo"),
        ]
        for body, fragment in cases:
            problem(await h.api.post("/api/memory", json=body), 422, fragment)
        r = await h.api.post("/api/memory", content='{"repo": "demo", "content": "a\\ud800b"}',
                             headers={"Content-Type": "application/json"})  # fmt: skip
        problem(r, 422, "content")
        assert (await h.api.get("/api/memory")).json() == []  # nothing was stored
        ok = await h.api.post("/api/memory", json={"repo": "demo", "content": "a note that is fine"})
        assert ok.status_code == 201, ok.text


async def chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    yield b'{"title": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'", "repo": "demo"}'


async def test_bodies_over_the_cap_are_refused_before_they_are_read(start_factory, token):
    async with start_factory(worker=False, max_body_bytes=64 * 1024, plane={"webhook_secret": "plane-secret-123"}) as h:
        before = rows(h)
        big = json.dumps({"title": "x" * 100_000, "repo": "demo"})
        problem(await h.api.post("/api/tasks", content=big, headers={"Content-Type": "application/json"}), 413,
                "max_body_bytes")  # fmt: skip
        problem(await h.api.post("/webhooks/plane", content=big), 413, "max_body_bytes")
        problem(await h.api.post("/webhooks/github", content=big), 413, "max_body_bytes")
        # chunked: no Content-Length to go by, so the cap is counted as the body streams in
        r = await h.api.post("/api/tasks", content=chunks(200_000), headers={"Content-Type": "application/json"})
        assert "content-length" not in r.request.headers
        problem(r, 413, "max_body_bytes")
        problem(await h.api.post("/webhooks/plane", content=chunks(200_000)), 413, "max_body_bytes")
        # a body under the cap still works
        r = await h.api.post("/api/messages", json={"content": "small enough"})
        assert r.status_code == 201, r.text
        assert rows(h) == {**before, "Message": before["Message"] + 1}


async def test_the_token_is_checked_before_the_body_is_parsed(start_factory, token):
    async with start_factory(worker=False, max_body_bytes=64 * 1024) as h:
        h.api.headers.pop("Authorization")
        for body in ('{"title": ', "NaN", json.dumps({"title": "x" * 100_000, "repo": "demo"})):
            r = await h.api.post("/api/tasks", content=body, headers={"Content-Type": "application/json"})
            problem(r, 401, "bearer token")
            assert r.headers["www-authenticate"] == "Bearer"
        problem(await h.api.post("/api/tasks", content=chunks(200_000)), 401, "bearer token")
        assert rows(h)["Task"] == 0


class Cuttable:
    """A TCP forwarder to the Temporal frontend that can be cut, as a network or frontend outage would."""

    def __init__(self, target: str):
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()


async def test_auto_run_while_temporal_is_down_is_a_503_that_keeps_a_queued_task(start_factory, temporal_env, token):
    async with start_factory() as h:
        proxy = Cuttable(temporal_env.client.service_client.config.target_host)
        via = await Client.connect(await proxy.start(), data_converter=data_converter)
        app = create_app(h.cfg, client=via, engine=h.runtime.engine, board=h.runtime.board)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://f", headers=dict(h.api.headers)) as api:
            await proxy.cut()
            body = {"title": "Started in an outage", "description": "[[scenario:outage-start]]", "repo": "demo"}
            r = await api.post("/api/tasks", params={"auto_run": "true"}, json=body)
            detail = problem(r, 503, "Temporal is unavailable", "kept as queued", "/run")
        # the row is whole and queued, the one row written, and no workflow was started
        tasks = (await h.api.get("/api/tasks")).json()
        assert len(tasks) == 1 and tasks[0]["status"] == "queued" and tasks[0]["title"] == body["title"]
        assert f"task {tasks[0]['id']} " in detail
        assert rows(h) == {"Task": 1, "Message": 0, "Handoff": 0, "WorkflowRun": 0}
        await app.state.http.aclose()
        # Temporal answers again (the harness's own connection): the kept task starts as the 503 said
        h.model.add_scenario("outage-start", [Text("Nothing to change.")])
        started = await h.api.post(f"/api/tasks/{tasks[0]['id']}/run")
        assert started.status_code == 202, started.text
        assert (await h.wait_for(tasks[0]["id"], {"done", "failed"}))["status"] == "done"
        await h.settled(tasks[0]["id"])


async def test_the_openapi_document_tells_the_truth(start_factory, token):
    async with start_factory(worker=False) as h:
        doc = (await h.api.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer",
        "description": "`Authorization: Bearer <your API token>` (or the bootstrap FACTORY_AUTH_TOKEN)",
    }  # fmt: skip
    paths = doc["paths"]
    assert paths["/api/tasks"]["get"]["security"] == [{"HTTPBearer": []}]  # 403: the person's role is too low
    assert "security" not in paths["/health"]["get"] and "security" not in paths["/webhooks/plane"]["post"]
    schemas = doc["components"]["schemas"]
    assert schemas["TaskStatus"]["enum"] == ["queued", "in_progress", "awaiting_input", "done", "failed", "cancelled"]
    assert schemas["WorkflowStatus"]["enum"] == ["pending", "running", "completed", "failed", "cancelled"]
    stream = paths["/api/messages/stream/sse"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    declared = {
        ("/api/tasks", "post"): {"201", "401", "403", "413", "422", "503"},
        ("/api/tasks/{task_id}", "get"): {"200", "401", "403", "404", "422"},
        ("/api/tasks/{task_id}/run", "post"): {"202", "401", "403", "404", "409", "422", "503"},
        ("/api/tasks/{task_id}/answer", "post"): {"200", "401", "403", "404", "409", "413", "422", "503"},
        ("/api/messages", "post"): {"201", "401", "403", "404", "409", "413", "422"},
        ("/api/memory", "post"): {"201", "401", "403", "413", "422", "503"},
        ("/api/handoffs", "post"): {"201", "401", "403", "404", "409", "413", "422", "503"},
        ("/webhooks/github", "post"): {"200", "400", "403", "404", "413", "422", "503"},
    }
    for (path, method), codes in declared.items():
        assert set(paths[path][method]["responses"]) == codes, (path, method)
    # the 422 is the shape the handler sends (a string detail, the errors listed), not FastAPI's default
    ref = paths["/api/tasks/{task_id}"]["get"]["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ValidationProblem")
    assert schemas["ValidationProblem"]["properties"]["detail"]["type"] == "string"
    task_id = paths["/api/tasks/{task_id}"]["get"]["parameters"][0]["schema"]
    assert task_id["minimum"] == 1 and task_id["maximum"] == 2**63 - 1
