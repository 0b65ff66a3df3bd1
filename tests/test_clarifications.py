"""Clarifications: an agent's question pauses its task durably and the answer resumes the same session.

Real Temporal, real git, the real `claude` CLI against the scripted model server.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from sqlmodel import select

from factory.store.tables import AgentRun, session_scope
from tests.conftest import remote_file, write_config
from tests.fakes.anthropic import RecordedRequest, Stall, Text, ToolUse
from tests.procs import FactoryUp, alive


def question(text: str, options: list[str] | None = None) -> Text:
    line = {"type": "question", "question": text}
    if options:
        line["options"] = options
    return Text(f"I need a decision before I go on.\n{json.dumps(line)}")


async def test_question_pauses_with_no_process_and_the_answer_resumes_the_same_session(start_factory, model):
    model.add_scenario(
        "clarify-cache",
        [
            question("Should the cache be per user or global?", ["per user", "global"]),
            [ToolUse("Write", {"file_path": "cache.txt", "content": "scope: global\n"})],
            Text("Wrote cache.txt with the global scope."),
        ],
    )
    async with start_factory() as h:
        t = await h.create("Add a cache", "clarify-cache")
        waiting = await h.wait_for(t["id"], {"awaiting_input", "failed", "done"})
        assert waiting["status"] == "awaiting_input", waiting
        pq = waiting["pending_question"]
        assert pq["text"] == "Should the cache be per user or global?"
        assert pq["options"] == ["per user", "global"]
        assert pq["id"] and pq["asked_at"]

        # No agent process is alive while the task waits.
        with session_scope(h.runtime.engine) as s:
            runs = list(s.exec(select(AgentRun).where(AgentRun.task_id == t["id"])))
        assert len(runs) == 1 and runs[0].ended_at is not None and runs[0].pid
        assert not alive(runs[0].pid)
        assert (await h.api.get("/api/agents")).json() == []
        first = model.requests_for("clarify-cache")
        assert len(first) == 1 and first[0].session_id

        r = await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "global, please", "answered_by": "ana"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted"

        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        assert done["pending_question"] is None
        resumed = model.requests_for("clarify-cache")[1]
        assert "global, please" in resumed.last_user_text
        assert resumed.session_id == first[0].session_id  # the same CLI session, resumed
        # the resumed conversation still holds the question the agent asked
        assert "Should the cache be per user or global?" in resumed.all_text
        assert remote_file(h.remote, done["branch"], "cache.txt") == "scope: global\n"

        qs = (await h.api.get(f"/api/tasks/{t['id']}/questions")).json()
        assert [(q["text"], q["answer"], q["answered_by"], q["status"]) for q in qs] == [
            ("Should the cache be per user or global?", "global, please", "ana", "answered")
        ]
        # the question reached the board for people to see
        board = (await h.api.get("/api/messages", params={"task_id": t["id"], "message_type": "question"})).json()
        assert any("per user or global" in m["content"] for m in board)


async def test_answers_are_refused_when_nothing_is_asked_twice_or_stale(start_factory, model):
    model.add_scenario("busy", [Stall(60, then="Finished without asking.")])
    model.add_scenario("asks-once", [question("Which port?", ["8080", "9090"]), Text("Using 9090.")])
    async with start_factory() as h:
        # unknown task
        r = await h.api.post("/api/tasks/999999/answer", json={"answer": "x"})
        assert r.status_code == 404

        # a running task that asks nothing
        busy = await h.create("Busy work", "busy")
        await h.wait_for(busy["id"], "in_progress")
        await h.until(lambda: model.requests_for("busy"), what="the busy agent to call the model")
        r = await h.api.post(f"/api/tasks/{busy['id']}/answer", json={"answer": "unasked"})
        assert r.status_code == 409, r.text
        assert "no pending question" in r.json()["detail"]
        model.release_stalls()

        t = await h.create("Pick a port", "asks-once")
        waiting = await h.wait_for(t["id"], "awaiting_input")
        qid = waiting["pending_question"]["id"]
        r = await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "  "})
        assert r.status_code == 422
        r = await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "9090", "question_id": qid + 1000})
        assert r.status_code == 409, r.text
        assert "not the pending question" in r.json()["detail"]
        r = await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "9090", "question_id": qid})
        assert r.status_code == 200, r.text
        r = await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "8080", "question_id": qid})
        assert r.status_code == 409, r.text  # the question was answered already
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        assert "9090" in model.requests_for("asks-once")[-1].last_user_text

        busy_done = await h.wait_for(busy["id"], {"done", "failed"})
        assert busy_done["status"] == "done"
        r = await h.api.post(f"/api/tasks/{busy['id']}/answer", json={"answer": "late"})
        assert r.status_code == 409  # a finished task asks nothing
        qs = (await h.api.get(f"/api/tasks/{t['id']}/questions")).json()
        assert [(q["answer"], q["status"]) for q in qs] == [("9090", "answered")]


async def test_two_questions_in_a_row(start_factory, model):
    model.add_scenario(
        "two-questions",
        [
            question("Which database?", ["sqlite", "postgres"]),
            question("Which table name?"),
            [ToolUse("Write", {"file_path": "db.txt", "content": "postgres:users\n"})],
            Text("Configured postgres with the users table."),
        ],
    )
    async with start_factory() as h:
        t = await h.create("Set up the database", "two-questions")
        first = await h.wait_for(t["id"], "awaiting_input")
        assert first["pending_question"]["text"] == "Which database?"
        r = await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "postgres", "answered_by": "bo"})
        assert r.status_code == 200, r.text

        async def second_question():
            task = await h.task(t["id"])
            pq = task["pending_question"]
            return task if pq and pq["text"] == "Which table name?" else None

        second = await h.until(second_question, timeout=60, what="the second question")
        assert second["status"] == "awaiting_input"
        assert second["pending_question"]["id"] != first["pending_question"]["id"]
        assert second["pending_question"]["options"] is None
        r = await h.api.post(
            f"/api/tasks/{t['id']}/answer",
            json={"answer": "users", "answered_by": "cy", "question_id": second["pending_question"]["id"]},
        )
        assert r.status_code == 200, r.text
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done

        reqs = model.requests_for("two-questions")
        assert len({r.session_id for r in reqs}) == 1
        assert "postgres" in reqs[1].last_user_text and "users" in reqs[2].last_user_text
        qs = (await h.api.get(f"/api/tasks/{t['id']}/questions")).json()
        assert [(q["text"], q["answer"], q["answered_by"]) for q in qs] == [
            ("Which database?", "postgres", "bo"),
            ("Which table name?", "users", "cy"),
        ]
        assert all(q["answered_at"] and q["status"] == "answered" for q in qs)
        assert remote_file(h.remote, done["branch"], "db.txt") == "postgres:users\n"


async def test_no_answer_within_the_clarification_timeout_fails_the_task(start_factory, model):
    model.add_scenario("unanswered", [question("Anyone there?")])
    async with start_factory(clarification_timeout_hours=0.001) as h:  # 3.6 seconds
        t = await h.create("Wait forever", "unanswered")
        await h.wait_for(t["id"], "awaiting_input")
        failed = await h.wait_for(t["id"], {"failed", "done"}, timeout=60)
        assert failed["status"] == "failed"
        assert "no answer came" in failed["error"] and "clarification_timeout_hours" in failed["error"]
        assert failed["pending_question"] is None
        qs = (await h.api.get(f"/api/tasks/{t['id']}/questions")).json()
        assert [q["status"] for q in qs] == ["expired"]
        r = await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "too late"})
        assert r.status_code == 409
        assert len(model.requests_for("unanswered")) == 1  # never resumed


async def test_a_question_inside_a_workflow_step_pauses_the_workflow(start_factory, model):
    def reviewer_or(turn: Any) -> Any:
        def pick(rec: RecordedRequest) -> Any:
            if "You are Factory's reviewer agent" in rec.system:
                return Text('Fine.\n{"verdict": "approved", "issues": []}')
            return turn

        return pick

    model.add_scenario(
        "wf-question",
        [
            reviewer_or(question("Which log format?", ["json", "text"])),
            reviewer_or([ToolUse("Write", {"file_path": "log.txt", "content": "format: json\n"})]),
            reviewer_or(Text("Switched the logs to json.")),
        ],
    )
    async with start_factory() as h:
        r = await h.api.post(
            "/api/workflows/code_review",
            json={"title": "Log format", "description": "[[scenario:wf-question]]", "repo": "demo"},
        )
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]

        async def run_with_question() -> dict[str, Any] | None:
            run = (await h.api.get(f"/api/workflows/{run_id}")).json()
            return run if run["pending_question"] or run["status"] in ("completed", "failed") else None

        run = await h.until(run_with_question, timeout=60, what="the workflow's question")
        pq = run["pending_question"]
        assert pq is not None, run
        assert pq["text"] == "Which log format?" and pq["options"] == ["json", "text"]
        assert run["status"] == "running" and run["current_agent"] == "coder"
        step_task = await h.task(pq["task_id"])
        assert step_task["status"] == "awaiting_input" and step_task["workflow_run_id"] == run_id
        assert (await h.api.get("/api/agents")).json() == []
        r = await h.api.post(f"/api/tasks/{pq['task_id']}/answer", json={"answer": "json", "question_id": pq["id"]})
        assert r.status_code == 200, r.text

        async def finished() -> dict[str, Any] | None:
            run = (await h.api.get(f"/api/workflows/{run_id}")).json()
            return run if run["status"] in ("completed", "failed", "cancelled") else None

        run = await h.until(finished, timeout=90, what="the workflow to finish")
        assert run["status"] == "completed", run
        assert run["pending_question"] is None and run["approved"] is True
        coder = [q for q in model.requests_for("wf-question") if "You are Factory's reviewer agent" not in q.system]
        assert len(coder) == 3 and len({q.session_id for q in coder}) == 1
        assert "json" in coder[1].last_user_text
        assert remote_file(h.remote, run["branch"], "log.txt") == "format: json\n"


# --------------------------------------------------------------------------------------------------
# The wait survives a restart of `factory up`


async def test_the_wait_survives_a_restart_of_factory_up(tmp_path, remote, github, model):
    model.add_scenario(
        "restart-wait",
        [
            question("Keep the old API?", ["yes", "no"]),
            [ToolUse("Write", {"file_path": "api.txt", "content": "old api kept\n"})],
            Text("Kept the old API."),
        ],
    )
    up = FactoryUp(write_config(tmp_path, remote, github.url), tmp_path / "up-data")

    async def wait_for(task_id: int, statuses: set[str], timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            t = (await asyncio.to_thread(api.get, f"/api/tasks/{task_id}")).json()
            if t["status"] in statuses:
                return t
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} stayed {t['status']}: {up.log.read_text()[-3000:]}")
            await asyncio.sleep(0.1)

    await asyncio.to_thread(up.start)
    try:
        with up.client() as api:
            r = api.post(
                "/api/tasks",
                params={"auto_run": "true"},
                json={"title": "Restart me", "description": "[[scenario:restart-wait]]", "repo": "demo"},
            )
            assert r.status_code == 201, r.text
            task_id = r.json()["id"]
            waiting = await wait_for(task_id, {"awaiting_input", "failed", "done"})
            assert waiting["status"] == "awaiting_input", waiting
            qid = waiting["pending_question"]["id"]
        # a message board page left open does not hold the shutdown up
        async with httpx.AsyncClient(base_url=up.url, timeout=httpx.Timeout(30, read=None)) as c:
            async with c.stream("GET", "/api/messages/stream/sse") as stream:
                assert stream.status_code == 200
                started = time.monotonic()
                code = await asyncio.to_thread(up.stop)
                stop_took = time.monotonic() - started
    except BaseException:
        if up.proc is not None and up.proc.poll() is None:
            await asyncio.to_thread(up.stop)
        raise
    assert code == 0, up.log.read_text()[-3000:]
    assert stop_took < 20, stop_took

    await asyncio.to_thread(up.start)  # same data dir: same database and Temporal state
    try:
        with up.client() as api:
            t = api.get(f"/api/tasks/{task_id}").json()
            assert t["status"] == "awaiting_input"
            assert t["pending_question"]["id"] == qid
            assert api.get("/api/agents").json() == []
            r = await asyncio.to_thread(
                api.post, f"/api/tasks/{task_id}/answer", json={"answer": "yes, keep it", "question_id": qid}
            )
            assert r.status_code == 200, r.text
            done = await wait_for(task_id, {"done", "failed"})
            assert done["status"] == "done", done
    finally:
        await asyncio.to_thread(up.stop)
    reqs = model.requests_for("restart-wait")
    assert len(reqs) == 3 and {r.session_id for r in reqs} == {reqs[0].session_id}
    assert "yes, keep it" in reqs[1].last_user_text
    assert remote_file(remote, done["branch"], "api.txt") == "old api kept\n"
