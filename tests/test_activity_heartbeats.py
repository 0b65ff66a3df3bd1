"""The heartbeat helper of long activities (activities/_heartbeat.py), in Temporal's ActivityEnvironment."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities._agent_push import push
from activities._heartbeat import heartbeating, heartbeats
from activities.agent import AgentActivities, _Progress
from factory.contracts import AgentRequest, AgentResult, AgentSpec, ChangesResult, FinalizeInput, RepoRef, WorkspaceInfo

pytestmark = pytest.mark.fast  # unit tests: no Temporal, no CLI


async def test_heartbeating_beats_while_the_body_runs_and_stops_after():
    env = ActivityEnvironment()
    beats: list[float] = []
    env.on_heartbeat = lambda *_details: beats.append(asyncio.get_running_loop().time())

    @activity.defn
    async def slow() -> str:
        async with heartbeating(interval=0.05):
            await asyncio.sleep(0.5)
        return "done"

    assert await env.run(slow) == "done"
    assert len(beats) >= 5  # every 50 ms over 500 ms, not once
    after = len(beats)
    await asyncio.sleep(0.2)
    assert len(beats) == after  # the beating stopped with the body


async def test_a_cancelled_step_finishes_its_work_then_reports_the_cancel():
    env = ActivityEnvironment()
    finished: list[str] = []

    @activity.defn
    @heartbeats
    async def git_step(name: str) -> str:
        await asyncio.sleep(0.3)  # a git command that must not be killed halfway
        finished.append(name)
        return name

    run = asyncio.ensure_future(env.run(git_step, "push"))
    await asyncio.sleep(0.05)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert finished == ["push"]


async def test_a_worker_shutdown_stops_the_step_at_once():
    env = ActivityEnvironment()
    finished: list[str] = []

    @activity.defn
    @heartbeats
    async def git_step() -> None:
        await asyncio.sleep(5)
        finished.append("step")

    run = asyncio.ensure_future(env.run(git_step))
    await asyncio.sleep(0.05)
    env.worker_shutdown()
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 2)
    assert finished == []


async def test_the_decorated_activity_keeps_its_name_and_types():
    @activity.defn
    @heartbeats
    async def open_pull_request(number: int) -> str:
        return str(number)

    defn = activity._Definition.from_callable(open_pull_request)
    assert defn is not None
    assert defn.name == "open_pull_request" and defn.arg_types == [int] and defn.ret_type is str
    assert await ActivityEnvironment().run(open_pull_request, 7) == "7"


# The first beat waits one interval: each is a round trip to Temporal and a write of the workflow's state
# there, and the SDK sends the first at once. Most steps end sooner and so send none (bench/PIPELINE.md).


async def test_a_step_shorter_than_one_interval_sends_no_heartbeat():
    env = ActivityEnvironment()
    beats: list[float] = []
    env.on_heartbeat = lambda *_details: beats.append(asyncio.get_running_loop().time())

    @activity.defn
    @heartbeats
    async def quick() -> str:
        await asyncio.sleep(0.05)
        return "done"

    assert await env.run(quick) == "done"
    assert beats == []

    @activity.defn
    async def longer() -> float:
        start = asyncio.get_running_loop().time()
        async with heartbeating(interval=0.1):
            await asyncio.sleep(0.35)
        return start

    start = await env.run(longer)
    assert 2 <= len(beats) <= 3 and beats[0] - start >= 0.1  # the first after one interval, then every one


async def test_the_agent_runs_beats_wait_one_interval_and_carry_the_session_as_it_is_then(tmp_path):
    env = ActivityEnvironment()
    beats: list[tuple[float, dict]] = []
    env.on_heartbeat = lambda *details: beats.append((asyncio.get_running_loop().time(), details[0]))
    runs = SimpleNamespace(_beat_interval=lambda: 0.2)  # the activity's interval, short here
    progress = _Progress(session_id="s-0")

    @activity.defn
    async def run_agent(for_s: float) -> float:
        start = asyncio.get_running_loop().time()
        loop = asyncio.create_task(AgentActivities._heartbeat_loop(runs, progress))  # type: ignore[arg-type]
        await asyncio.sleep(for_s / 2)
        progress.session_id, progress.started = "s-1", True  # the CLI announced its session
        await asyncio.sleep(for_s / 2)
        loop.cancel()
        return start

    await env.run(run_agent, 0.1)
    assert beats == []  # a run shorter than one interval sends none
    start = await env.run(run_agent, 0.5)
    assert beats and beats[0][0] - start >= 0.2
    assert beats[-1][1] == {"session_id": "s-1", "started": True}

    # the run's own push beats the same way: a quick push sends none, a slow one beats after one interval
    ws = WorkspaceInfo(
        path=str(tmp_path), branch="factory/task-5", base_branch="main", host="h", host_queue="q", agent_queue="q/a"
    )
    spec = AgentSpec(agent_type="coder", system_prompt_file="coder.md", tools=[], total_timeout_s=60, idle_timeout_s=9)
    fin = FinalizeInput(task_id=5, workspace=ws, repo=RepoRef(name="demo", url="file:///r"), message="m")
    req = AgentRequest(task_id=5, agent=spec, cwd=str(tmp_path), prompt="p", session_id="s-1", finalize=fin)

    def pushing(for_s: float):
        async def finalize(_: FinalizeInput) -> ChangesResult:
            await asyncio.sleep(for_s)
            return ChangesResult(committed=True, pushed=True, commits_ahead=1)

        return finalize

    beats.clear()
    res = await env.run(push, req, AgentResult(session_id="s-1"), pushing(0.05), tmp_path, 0.2)
    assert res.changes is not None and res.changes.pushed and beats == []
    await env.run(push, req, AgentResult(session_id="s-1"), pushing(0.5), tmp_path, 0.2)
    assert beats and beats[0][1] == {"session_id": "s-1", "started": True}
