"""Attacks on the copy of a finished round's session into a follow-up round's home (activities/_session_seed.py).

The earlier round's agent could write its whole home, so what sits at its transcript's path is
hostile: a link to a file elsewhere (followed, Factory would read what the link names), a link in
place of the session folder, or a FIFO (opened blocking, the worker would hang). Each is planted
for real after the first round finished; the follow-up round must start afresh, with its one log
line, never resuming through the plant. Real Temporal, git, bwrap and the `claude` CLI against the
scripted model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from activities._session_seed import project_dir_name
from tests.fakes.anthropic import Text, ToolUse

pytestmark = pytest.mark.adversarial


def _plant(kind: str, folder: Path, transcript: Path, elsewhere: Path) -> None:
    elsewhere.mkdir(parents=True)
    # a valid transcript outside the home: if Factory followed the plant, the round would resume from it
    shutil.copy2(transcript, elsewhere / transcript.name)
    if kind == "file-link":
        transcript.unlink()
        transcript.symlink_to(elsewhere / transcript.name)
    elif kind == "folder-link":
        shutil.rmtree(folder)
        folder.symlink_to(elsewhere, target_is_directory=True)
    else:
        transcript.unlink()
        os.mkfifo(transcript)


@pytest.mark.parametrize("kind", ["file-link", "folder-link", "fifo"])
async def test_a_planted_link_or_fifo_at_the_transcript_is_not_followed_and_the_round_starts_afresh(
    start_factory, model, tmp_path, kind
):
    first_name, fresh_name = f"seed-{kind}", f"seed-{kind}-fresh"
    model.add_scenario(
        first_name,
        [
            [ToolUse("Write", {"file_path": "word.txt", "content": "a fruit\n"})],
            Text("Round one: the word is PAPAYA."),
            Text("Resumed through the plant."),
        ],
    )
    model.add_scenario(fresh_name, [Text("Started afresh.")])
    async with start_factory() as h:
        t = await h.create("Remember a word", first_name)
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        await h.settled(t["id"])
        session = model.requests_for(first_name)[0].session_id
        worktree = h.cfg.workspace_path / "worktrees" / f"task-{t['id']}"
        folder = h.cfg.workspace_path / "homes" / f"task-{t['id']}" / ".claude" / "projects"
        folder = folder / project_dir_name(str(worktree))
        transcript = folder / f"{session}.jsonl"
        assert transcript.is_file()  # the CLI saved it where the copy looks
        _plant(kind, folder, transcript, tmp_path / "elsewhere")

        r = await h.api.post(f"/api/tasks/{t['id']}/follow-up", json={"message": f"Again [[scenario:{fresh_name}]]"})
        assert r.status_code == 202, r.text
        round_id = r.json()["task_id"]
        finished = await h.wait_for(round_id, {"done", "failed"}, timeout=60)  # a FIFO read blocking hangs here
        assert finished["status"] == "done", finished
        assert finished["result"] == "Started afresh."
        assert len(model.requests_for(first_name)) == 2  # never resumed through the plant
        fresh = model.requests_for(fresh_name)
        assert len(fresh) == 1 and "PAPAYA" in fresh[0].all_text  # the last reply, quoted instead
        logs = (await h.api.get(f"/api/tasks/{round_id}/logs")).json()
        said = [e["content"] for e in logs if "not carried over" in e["content"]]
        assert len(said) == 1, said
        copied = h.cfg.workspace_path / "homes" / f"task-{round_id}" / ".claude" / "projects"
        copied = copied / project_dir_name(str(h.cfg.workspace_path / "worktrees" / f"task-{round_id}"))
        assert not (copied / f"{session}.jsonl").is_symlink()
