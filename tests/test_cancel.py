"""A cancel stops a running agent within seconds and wins over the result that comes after it.

Real Temporal, real git, the real claude CLI in the sandbox against the scripted model; Plane is
the stand-in server. The agent makes many quick tool calls (a run of ~20 s); the cancel comes
after its third model call. Without the fix the cancel reached the agent only with a heartbeat
answer (every 24 s at the default 30 s heartbeat timeout), and a run that ended before that went
on to push, open its PR and move the Plane issue to "In review".
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from sqlmodel import Session, select

from factory.store.tables import AgentRun
from tests.fakes.anthropic import Text, ToolUse
from tests.test_integrations import PLANE_SECRET, post_plane

STEPS = 25  # quick tool calls, each a model call: ~20 s of work when nobody stops it


def busy_agent(model: Any) -> str:
    sc = f"cancel-{uuid.uuid4().hex[:8]}"
    turns: list[Any] = [[ToolUse("Write", {"file_path": "started.txt", "content": "work\n"})]]
    turns += [[ToolUse("Bash", {"command": f"sleep 0.5; echo step {i}"})] for i in range(STEPS)]
    model.add_scenario(sc, [*turns, Text("All steps done.")])
    return sc


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is gone for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def _agent_pid(h: Any, task_id: int) -> int:
    def running() -> int | None:
        with Session(h.runtime.engine) as s:
            run = s.exec(select(AgentRun).where(AgentRun.task_id == task_id, AgentRun.pid.is_not(None))).first()
            return run.pid if run else None

    return await h.until(running, timeout=60, what="the agent to start")


async def _cancel_mid_run(h: Any, model: Any, github: Any, sc: str, task_id: int, cancel: Any) -> None:
    pid = await _agent_pid(h, task_id)
    await h.until(lambda: len(model.requests_for(sc)) >= 3, timeout=60, what="three model calls")
    cancelled_at = time.time()
    await cancel()
    await h.until(lambda: not alive(pid), timeout=5, what="the agent process to end within 5 s of the cancel")
    done = await h.wait_for(task_id, {"done", "failed", "cancelled"}, timeout=60)
    assert done["status"] == "cancelled", done
    await h.settled(task_id)
    after = [r for r in model.requests_for(sc) if r.time > cancelled_at]
    assert len(after) <= 2, f"{len(after)} model calls after the cancel"
    assert len(model.requests_for(sc)) < STEPS  # the run did not go on to its end
    assert not [c for c in github.pr_creations() if c.body.get("head") == done["branch"]], "a PR was opened"
    assert (await h.task(task_id))["status"] == "cancelled"


async def test_rest_cancel_stops_the_agent_within_seconds_and_opens_no_pr(start_factory, model, github):
    sc = busy_agent(model)
    # the default heartbeat timeout: a cancel must not wait for the agent's next heartbeat answer
    async with start_factory(temporal={"heartbeat_timeout_seconds": 30}) as h:
        t = await h.create("Work that gets cancelled", sc)

        async def cancel() -> None:
            r = await h.api.post(f"/api/tasks/{t['id']}/cancel")
            assert r.status_code == 202, r.text

        await _cancel_mid_run(h, model, github, sc, t["id"], cancel)


async def test_plane_cancel_mid_run_keeps_the_issue_out_of_review(start_factory, model, github, plane):
    sc = busy_agent(model)
    cfg = plane.config(webhook_secret=PLANE_SECRET, default_repo="demo")
    async with start_factory(plane=cfg, temporal={"heartbeat_timeout_seconds": 30}) as h:
        issue = str(uuid.uuid4())
        r = await post_plane(h, plane.issue_payload(issue, "queued", description_html=f"<p>[[scenario:{sc}]]</p>"))
        task_id = r.json()["task_id"]

        async def cancel() -> None:
            r = await post_plane(h, plane.issue_payload(issue, "cancelled"))
            assert r.json()["status"] == "cancelled", r.text

        await _cancel_mid_run(h, model, github, sc, task_id, cancel)
        assert "in_review" not in plane.state_names(issue), plane.state_names(issue)


async def test_a_cancel_as_the_agent_starts_still_stops_it_within_seconds(start_factory, model, github):
    # the run may not have spawned its process yet when the stop comes: the stop is asked again
    sc = busy_agent(model)
    async with start_factory(temporal={"heartbeat_timeout_seconds": 30}) as h:
        t = await h.create("Cancelled as it starts", sc)
        await h.wait_for(t["id"], "in_progress", timeout=60)
        r = await h.api.post(f"/api/tasks/{t['id']}/cancel")
        assert r.status_code == 202, r.text
        cancelled_at = time.monotonic()
        done = await h.wait_for(t["id"], {"done", "failed", "cancelled"}, timeout=60)
        assert done["status"] == "cancelled", done
        await h.settled(t["id"])
        with Session(h.runtime.engine) as s:
            runs = s.exec(select(AgentRun).where(AgentRun.task_id == t["id"])).all()
        assert all(r.pid is None or not alive(r.pid) for r in runs)
        assert time.monotonic() - cancelled_at < 15, "the workflow waited for the agent's heartbeat"
        assert len(model.requests_for(sc)) <= 4
        assert not [c for c in github.pr_creations() if c.body.get("head") == done["branch"]]
