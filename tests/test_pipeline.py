"""The durable task pipeline end to end: real Temporal, real git, the real claude CLI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from factory.specs import task_workflow_id
from tests.conftest import remote_file
from tests.fakes.anthropic import Text, ToolUse
from workflows.common import GITHUB_LOCAL, OUTAGE_WINDOW


def scheduled_options(history: WorkflowHistory) -> dict[str, Any]:
    """The options each activity type was last scheduled with, by activity type."""
    return {
        e.activity_task_scheduled_event_attributes.activity_type.name: e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }


def assert_outlives_a_dead_worker(options: Any) -> None:
    """Heartbeats notice a dead worker within 30 s; an outage is retried for hours, not 5 times."""
    assert 0 < options.heartbeat_timeout.ToSeconds() <= 30
    assert options.retry_policy.maximum_attempts == 0
    assert options.retry_policy.maximum_interval.ToSeconds() <= 300
    assert options.schedule_to_close_timeout.ToSeconds() >= 3600


async def test_coder_task_ends_done_with_branch_and_one_pr(start_factory, model, github):
    model.add_scenario(
        "hello",
        [
            [ToolUse("Write", {"file_path": "hello.txt", "content": "hello from the agent\n"})],
            Text("I added hello.txt with a greeting."),
        ],
    )
    async with start_factory() as h:
        t = await h.create("Add a hello file", "hello")
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        assert done["branch"].startswith(f"factory/task-{t['id']}-add-a-hello-file")
        assert remote_file(h.remote, done["branch"], "hello.txt") == "hello from the agent\n"
        prs = [c for c in github.pr_creations() if c.body["head"] == done["branch"]]
        assert len(prs) == 1
        assert prs[0].body["base"] == "main"
        assert done["pr_url"].endswith(f"/pull/{github.prs[-1]['number']}")
        assert done["session_id"] and done["num_turns"] >= 1 and done["cost_usd"] > 0
        logs = (await h.api.get(f"/api/tasks/{t['id']}/logs")).json()
        kinds = {entry["kind"] for entry in logs}
        assert {"assistant", "tool_use", "tool_result", "result"} <= kinds
        # the worktree is gone, the branch is kept
        await h.settled(t["id"])
        assert not (h.cfg.workspace_path / "worktrees" / f"task-{t['id']}").exists()
        # no upstream per task in the shared mirror config (it would grow and be fought over)
        assert "factory/task-" not in (h.cfg.workspace_path / "mirrors" / "demo.git" / "config").read_text()
        # a step of a worker that dies is retried within seconds; GitHub or the git host down is waited out
        history = await h.client.get_workflow_handle(task_workflow_id(h.cfg, t["id"])).fetch_history()
        options = scheduled_options(history)
        assert_outlives_a_dead_worker(options["prepare_workspace"])
        # the agent's run pushed its work itself (patch agent-pushes), the PR was opened by a local activity,
        # and the worktree removed by one in the same workflow task (patch clean-up-here: this worker is its
        # host; its test environments with it): two activities and three workflow tasks per task
        assert sorted(options) == ["prepare_workspace", "run_agent"]
        # the start is recorded and posted by the prepare step (patch started-in-prepare): between the worktree
        # and the agent's run no local activity; the PR, then the "done" record and event (side by side: their
        # markers come in either order), then the cleanup
        assert sorted(local_activities(history)) == sorted(
            ["open_pull_request", "update_task", "publish_event", "clean_up_here"]
        )
        assert local_activities(history)[0] == "open_pull_request"
        assert local_activities(history)[-1] == "clean_up_here"
        started = [
            m for m in (await h.api.get("/api/messages", params={"task_id": t["id"]})).json()
            if m["content"].startswith(f"task #{t['id']} started:")
        ]  # fmt: skip
        assert len(started) == 1 and f"(branch {done['branch']})" in started[0]["content"], started
        assert GITHUB_LOCAL["schedule_to_close_timeout"] >= OUTAGE_WINDOW  # GitHub down: waited out, as before
        assert sum(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for e in history.events) == 3


async def test_a_push_the_agent_run_cannot_make_is_made_by_the_finalize_step(start_factory, model, github):
    """The git host refuses the run's own push (a ref it cannot lock, retryable): the workflow's finalize step,
    with its outage policy, pushes instead, and the task ends done with one PR."""
    model.add_scenario(
        "flaky", [[ToolUse("Write", {"file_path": "flaky.txt", "content": "pushed late\n"})], Text("Wrote flaky.txt.")]
    )
    async with start_factory() as h:
        hook = h.remote / "hooks" / "pre-receive"
        once = h.remote / "refused-once"
        hook.write_text(
            "#!/bin/sh\n"
            f"if [ ! -e {once} ]; then touch {once}; "
            "echo \"error: cannot lock ref 'refs/heads/x': busy\" >&2; exit 1; fi\n"
        )
        hook.chmod(0o755)
        t = await h.create("Add a flaky file", "flaky")
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        assert once.exists()  # the first push was refused
        assert remote_file(h.remote, done["branch"], "flaky.txt") == "pushed late\n"
        assert len([c for c in github.pr_creations() if c.body["head"] == done["branch"]]) == 1
        history = await h.client.get_workflow_handle(task_workflow_id(h.cfg, t["id"])).fetch_history()
        options = scheduled_options(history)
        assert "finalize_changes" in options
        assert_outlives_a_dead_worker(options["finalize_changes"])
        assert len(model.requests_for("flaky")) == 2  # the agent ran once


async def test_a_running_agents_heartbeats_reach_temporal_every_quarter_of_the_timeout(start_factory, model):
    """With `heartbeat_timeout_seconds: 5` the server hears from a running agent every ~1.25 s, not every 4 s
    (the SDK's default throttle, 0.8 x the timeout): a loop held up for a second no longer times a live run out."""
    model.add_scenario("steady", [[ToolUse("Bash", {"command": "sleep 7"})], Text("Slept.")])
    async with start_factory() as h:
        t = await h.create("Sleep a while", "steady")
        handle = h.client.get_workflow_handle(task_workflow_id(h.cfg, t["id"]))
        seen: list[float] = []
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            desc = await handle.describe()
            runs = [a for a in desc.raw_description.pending_activities if a.activity_type.name == "run_agent"]
            if runs and runs[0].HasField("last_heartbeat_time"):
                at = runs[0].last_heartbeat_time.ToDatetime().timestamp()
                if not seen or at != seen[-1]:
                    seen.append(at)
            elif seen:
                break  # the run ended
            await asyncio.sleep(0.1)
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        gaps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
        assert len(gaps) >= 4, seen
        assert max(gaps) <= 2.5, gaps


def local_activities(history: WorkflowHistory) -> list[str]:
    """The local activities a workflow ran, in order (from their markers)."""
    names = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            attrs = e.marker_recorded_event_attributes
            if attrs.marker_name == "core_local_activity":
                data = json.loads(attrs.details["data"].payloads[0].data)
                names.append(data["activity_type"])
    return names


# --- watchdog, cancel, concurrency -----------------------------------------------------------

from datetime import datetime  # noqa: E402

from sqlmodel import Session, select  # noqa: E402

from factory.store.tables import AgentRun  # noqa: E402
from tests.fakes.anthropic import Stall  # noqa: E402
from tests.procs import alive  # noqa: E402


def _runs(h, task_id):
    with Session(h.runtime.engine) as s:
        return list(s.exec(select(AgentRun).where(AgentRun.task_id == task_id)))


def _elapsed(t) -> float:
    return (datetime.fromisoformat(t["finished_at"]) - datetime.fromisoformat(t["started_at"])).total_seconds()


async def test_idle_watchdog_kills_a_silent_agent(start_factory, model):
    model.add_scenario("silent", [Stall(120)])
    async with start_factory(agent_activity_timeout_minutes=0.05) as h:  # 3 s
        t = await h.create("Stall forever", "silent")
        failed = await h.wait_for(t["id"], {"failed", "done"}, timeout=60)
        assert failed["status"] == "failed"
        assert "agent_activity_timeout_minutes" in failed["error"]
        assert _elapsed(failed) < 3 + 15
        runs = _runs(h, t["id"])
        assert runs and all(r.ended_at is not None and not alive(r.pid) for r in runs)
        assert (await h.api.get("/api/agents")).json() == []
    model.release_stalls()


async def test_total_timeout_kills_a_busy_agent(start_factory, model):
    model.add_scenario("busy", [[ToolUse("Bash", {"command": "sleep 0.5; echo tick"})] for _ in range(60)])
    async with start_factory(agent_timeout_minutes=0.1, agent_activity_timeout_minutes=0.5) as h:  # 6 s, idle 30 s
        t = await h.create("Keep busy", "busy")
        failed = await h.wait_for(t["id"], {"failed", "done"}, timeout=60)
        assert failed["status"] == "failed"
        assert "agent_timeout_minutes" in failed["error"] and "agent_activity" not in failed["error"]
        assert 6 - 1 < _elapsed(failed) < 6 + 15
        assert all(not alive(r.pid) for r in _runs(h, t["id"]))


async def test_cancel_kills_the_running_agent(start_factory, model):
    model.add_scenario("long", [[ToolUse("Write", {"file_path": "partial.txt", "content": "half done\n"})], Stall(120)])
    async with start_factory() as h:
        t = await h.create("Run long", "long")
        runs = await h.until(lambda: [r for r in _runs(h, t["id"]) if r.pid], what="agent process")
        pid = runs[0].pid
        await h.until(lambda: any(r.turn == 1 for r in model.requests_for("long")), what="the stall")
        assert alive(pid)
        agents = (await h.api.get("/api/agents")).json()
        assert [a["task_id"] for a in agents] == [t["id"]]
        r = await h.api.post(f"/api/tasks/{t['id']}/cancel")
        assert r.status_code == 202
        done = await h.wait_for(t["id"], "cancelled", timeout=30)
        assert done["finished_at"]
        await h.settled(t["id"])
        assert not alive(pid)
        assert (await h.api.post(f"/api/tasks/{t['id']}/cancel")).status_code == 409
        # the work done before the cancel is kept on the remote branch, the worktree is gone
        assert remote_file(h.remote, done["branch"], "partial.txt") == "half done\n"
        assert not (h.cfg.workspace_path / "worktrees" / f"task-{t['id']}").exists()
    model.release_stalls()


async def test_at_most_max_concurrent_agents_run(start_factory, model):
    model.add_scenario(
        "work",
        [[ToolUse("Bash", {"command": "sleep 1.5; echo $FACTORY_TASK_ID > done-$FACTORY_TASK_ID.txt"})], Text("ok")],
    )
    async with start_factory(max_concurrent_agents=2) as h:
        ids = [(await h.create(f"Parallel {i}", "work"))["id"] for i in range(5)]
        for i in ids:
            assert (await h.wait_for(i, {"done", "failed"}, timeout=120))["status"] == "done"
        runs = [r for i in ids for r in _runs(h, i)]
        assert len(runs) == 5
        events = sorted([(r.started_at, 1) for r in runs] + [(r.ended_at, -1) for r in runs])
        running = peak = 0
        for _, delta in events:
            running += delta
            peak = max(peak, running)
        assert peak == 2, f"peak concurrency {peak}"
