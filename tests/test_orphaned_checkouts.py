"""Checkouts whose cleanup never ran are pushed, then removed, by the janitor; live ones are left alone."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from activities.workspace import PrepareInput, WorkspaceActivities
from factory.config import load_config
from factory.contracts import RepoRef
from factory.git.orphans import remove_orphaned_checkouts
from factory.store.tables import Task, make_engine, session_scope, utcnow
from factory.store.writes import insert
from tests.conftest import make_remote, remote_file

pytestmark = pytest.mark.fast  # unit tests: no Temporal, no CLI


async def test_orphaned_checkouts_are_pushed_then_removed_and_live_ones_kept(tmp_path):
    remote = make_remote(tmp_path / "remote.git")
    cfg = load_config(
        tmp_path / "none.yml", workspace_root=str(tmp_path / "ws"), repos={"demo": {"url": f"file://{remote}"}}
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    long_ago, recently = utcnow() - timedelta(days=2), utcnow() - timedelta(minutes=5)
    rows = {
        "old": insert(engine, Task(title="old", repo="demo", status="failed", finished_at=long_ago)),
        "recent": insert(engine, Task(title="recent", repo="demo", status="done", finished_at=recently)),
        "running": insert(engine, Task(title="running", repo="demo", status="in_progress")),
    }
    acts = WorkspaceActivities(cfg, "host", "hq", "aq")
    repo = RepoRef(name="demo", url=f"file://{remote}", configured=True)
    paths = {}
    for name, task in rows.items():
        ws = await ActivityEnvironment().run(acts.prepare_workspace, PrepareInput(task_id=task.id, title=name, repo=repo))
        paths[name] = ws.path
        with session_scope(engine) as s:
            row = s.get(Task, task.id)
            row.branch, row.base_branch = ws.branch, ws.base_branch
            s.add(row)
            s.commit()
        rows[name] = row
    # the old task's cleanup never ran: its last commit exists only in its checkout
    old = paths["old"]
    (tmp_path / "ws" / "worktrees" / f"task-{rows['old'].id}" / "left.txt").write_text("unpushed\n")
    clone_git = ["git", "-C", old, "-c", "user.name=a", "-c", "user.email=a@x"]
    subprocess.run([*clone_git, "add", "-A"], check=True)
    subprocess.run([*clone_git, "commit", "-qm", "work left behind"], check=True)
    stray = tmp_path / "ws" / "worktrees" / "task-999999"  # its task row is gone
    stray.mkdir()

    removed = await remove_orphaned_checkouts(cfg, engine, grace=timedelta(hours=12))

    assert removed == 2
    assert remote_file(remote, rows["old"].branch, "left.txt") == "unpushed\n"
    assert not (tmp_path / "ws" / "worktrees" / f"task-{rows['old'].id}").exists() and not stray.exists()
    for name in ("recent", "running"):
        assert (tmp_path / "ws" / "worktrees" / f"task-{rows[name].id}" / ".git").is_dir()
    assert await remove_orphaned_checkouts(cfg, engine, grace=timedelta(hours=12)) == 0
