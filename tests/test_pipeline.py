"""The durable task pipeline end to end: real Temporal, real git, the real claude CLI."""

from __future__ import annotations

from tests.conftest import remote_file
from tests.fakes.anthropic import Text, ToolUse


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
