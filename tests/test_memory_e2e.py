"""Memory in the task pipeline: a finished task is remembered and recalled for a related one."""

from __future__ import annotations

from factory.specs import task_workflow_id
from tests.fakes.anthropic import Text, ToolUse
from tests.fakes.http import free_port
from tests.test_pipeline import scheduled_options

LEARNING = '{"type": "learning", "content": "the login tests need the fake redis started first"}'


async def test_a_finished_task_is_recalled_for_a_related_one_only(start_factory, model):
    model.add_scenario(
        "mem-first",
        [
            [ToolUse("Write", {"file_path": "ratelimit.py", "content": "LIMIT = 5\n"})],
            Text(f"I added rate limiting to the login endpoint with a limit of 5 per minute.\n{LEARNING}"),
        ],
    )
    model.add_scenario("mem-related", [Text("noted")])
    model.add_scenario("mem-unrelated", [Text("noted")])
    async with start_factory(memory={"enabled": True}) as h:
        a = await h.create("Add rate limiting to the login endpoint", "mem-first")
        assert (await h.wait_for(a["id"], {"done", "failed"}))["status"] == "done"
        await h.settled(a["id"])
        hits = (await h.api.get("/api/memory", params={"q": "rate limiting login", "repo": "demo"})).json()
        mine = [m for m in hits if m["task_id"] == a["id"]]
        assert mine and "the login tests need the fake redis started first" in mine[0]["learnings"]
        assert mine[0]["outcome"] == "done" and mine[0]["pr_url"]

        b = await h.create("Tune the login rate limiting", "mem-related")
        c = await h.create("Upgrade fonts on marketing pages", "mem-unrelated")
        for t in (b, c):
            assert (await h.wait_for(t["id"], {"done", "failed"}))["status"] == "done"
        related = model.requests_for("mem-related")[0].all_text
        assert "Relevant past work" in related
        assert "Add rate limiting to the login endpoint" in related
        assert "fake redis" in related
        assert "Relevant past work" not in model.requests_for("mem-unrelated")[0].all_text


async def test_an_unreachable_memory_server_degrades_but_tasks_finish(start_factory, model, monkeypatch):
    monkeypatch.setenv("SURREALDB_URL", f"ws://127.0.0.1:{free_port()}/rpc")
    monkeypatch.setenv("SURREALDB_USER", "root")
    monkeypatch.setenv("SURREALDB_PASS", "nothing-listens-here")
    model.add_scenario("mem-down", [[ToolUse("Write", {"file_path": "m.txt", "content": "m\n"})], Text("done")])
    # the remember step rides out the outage for `memory.outage_seconds` (40 by default), then lets go
    async with start_factory(memory={"enabled": True, "outage_seconds": 4}) as h:
        t = await h.create("Work without memory", "mem-down")
        assert (await h.wait_for(t["id"], {"done", "failed"}))["status"] == "done"
        await h.settled(t["id"], timeout=30)
        history = await h.client.get_workflow_handle(task_workflow_id(h.cfg, t["id"])).fetch_history()
        remember = scheduled_options(history)["remember_task"]
        assert remember.schedule_to_close_timeout.ToSeconds() == 4
        assert remember.start_to_close_timeout.ToSeconds() == 4
        health = (await h.api.get("/health")).json()
        assert health["memory"] == "degraded" and health["status"] == "degraded"
        assert health["database"] == "ok" and health["temporal"] == "ok"
