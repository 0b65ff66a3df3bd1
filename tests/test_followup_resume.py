"""A follow-up to a finished task resumes that task's CLI session in the new round's own home.

Real Temporal, real git, the real `claude` CLI against the scripted model server. The scripted
model picks a scenario by the marker in the conversation's first user message and a turn by how
many assistant messages it holds, so a resumed round is answered by the first task's scenario,
turn 2, and a round that started afresh carries the follow-up's own marker instead.
"""

from __future__ import annotations

from activities._session_seed import project_dir_name
from tests.fakes.anthropic import Text, ToolUse


async def test_a_follow_up_round_resumes_the_finished_round_s_session(start_factory, model):
    model.add_scenario(
        "resume-round",
        [
            [ToolUse("Write", {"file_path": "word.txt", "content": "a fruit\n"})],
            Text("Round one: the word to remember is PAPAYA."),
            Text("Round two: the word was PAPAYA."),
        ],
    )
    model.add_scenario("resume-fresh", [Text("Started afresh.")])
    async with start_factory() as h:
        t = await h.create("Remember a word", "resume-round")
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        await h.settled(t["id"])
        first = model.requests_for("resume-round")
        assert len(first) == 2

        r = await h.api.post(
            f"/api/tasks/{t['id']}/follow-up", json={"message": "Which word was it? [[scenario:resume-fresh]]"}
        )
        assert r.status_code == 202, r.text
        assert r.json()["delivery"] == "new_round"
        round_id = r.json()["task_id"]
        finished = await h.wait_for(round_id, {"done", "failed"})
        assert finished["status"] == "done", finished

        # the round's first request is the earlier conversation, resumed: its prompt, its reply, then the follow-up
        assert model.requests_for("resume-fresh") == []
        resumed = model.requests_for("resume-round")
        assert len(resumed) == 3, resumed
        second = resumed[2]
        assert second.session_id == first[0].session_id
        said = [m for m in second.messages if m.get("role") == "assistant"]
        assert len(said) == 2 and "PAPAYA" in str(said[1]["content"])
        assert "Remember a word" in str(second.messages[0]["content"])
        assert "Which word was it?" in second.last_user_text
        assert finished["result"] == "Round two: the word was PAPAYA."

        # the transcript went under the folder named for the new round's worktree, in its own home
        worktree = h.cfg.workspace_path / "worktrees" / f"task-{round_id}"
        copied = (
            h.cfg.workspace_path
            / "homes"
            / f"task-{round_id}"
            / ".claude"
            / "projects"
            / project_dir_name(str(worktree))
        )
        assert (copied / f"{first[0].session_id}.jsonl").is_file()
        logs = (await h.api.get(f"/api/tasks/{round_id}/logs")).json()
        assert not any("not carried over" in e["content"] for e in logs)
