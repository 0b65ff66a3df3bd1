"""A done task's worktree removed in its workflow task (`WorkspaceActivities.clean_up_here`, a local activity):
only by the worktree's own host, only when nothing is left to push and no environment to take down."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ExecuteActivityInput

from activities.workspace import CleanupInput, PrepareInput, WorkspaceActivities
from factory.config import load_config
from factory.contracts import RepoRef
from temporal.drain import HostWork
from tests.conftest import make_remote
from tests.test_drain_bookkeeping import WS, _Ran

pytestmark = pytest.mark.fast


async def test_only_the_worktrees_host_removes_a_done_tasks_worktree_and_only_when_it_is_quick(tmp_path):
    remote = make_remote(tmp_path / "remote.git")
    cfg = load_config(
        tmp_path / "none.yml", workspace_root=str(tmp_path / "ws"), repos={"demo": {"url": f"file://{remote}"}}
    )
    repo = RepoRef(name="demo", url=f"file://{remote}", configured=True)
    acts = WorkspaceActivities(cfg, "host", "hq", "aq")
    acts.marks.complete([])  # the host has listed its environments: the marks are trusted
    env = ActivityEnvironment()
    ws = await env.run(acts.prepare_workspace, PrepareInput(task_id=7, title="Here", repo=repo))
    done = CleanupInput(task_id=7, workspace=ws, repo=repo, pushed=True, environments=["test"])

    async def here(inp: CleanupInput) -> bool:
        return await env.run(acts.clean_up_here, inp)

    # another host's worktree (or another worker's queue on this one), or work still to push: not here
    assert not await here(dataclasses.replace(done, workspace=dataclasses.replace(ws, host="other")))
    assert not await here(dataclasses.replace(done, workspace=dataclasses.replace(ws, host_queue="hq2")))
    assert not await here(dataclasses.replace(done, pushed=False, wip_message="WIP: x"))
    # a test environment it may have started: docker to call, so the host's own step does it
    acts.marks.add(7, "test")
    assert not await here(done)
    assert Path(ws.path).exists()
    acts.marks.dir.joinpath("task-7.test").unlink()
    assert await here(done)
    assert not Path(ws.path).exists()
    assert await here(done)  # a retry (the workflow task's worker died after it) finds nothing left


async def test_a_cleanup_done_in_the_workflow_task_counts_as_the_hosts_cleanup_for_a_drain():
    """A draining host waits for a finished run's cleanup on it (temporal/drain.py): done in the workflow
    task, it is done; answered "not here", the host's own step is still to come."""
    work = HostWork()
    inp = CleanupInput(task_id=5, workspace=WS, repo=RepoRef(name="demo", url="file:///r"), pushed=True)

    async def run(answer: bool) -> None:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, activity_type="clean_up_here", is_local=True)
        inbound = work.interceptor().intercept_activity(_Ran(answer))  # type: ignore[arg-type]
        await env.run(
            inbound.execute_activity, ExecuteActivityInput(fn=lambda i: i, args=[inp], executor=None, headers={})
        )

    await run(False)
    assert ("cleanup_workspace", 5) not in work.finished
    await run(True)
    assert ("cleanup_workspace", 5) in work.finished
