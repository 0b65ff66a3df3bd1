"""The heartbeat helper of long activities (activities/_heartbeat.py), in Temporal's ActivityEnvironment."""

from __future__ import annotations

import asyncio

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities._heartbeat import heartbeating, heartbeats

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
