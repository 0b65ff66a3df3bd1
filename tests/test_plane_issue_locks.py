"""Per-issue locks of the Plane inbound handler serialise one issue's deliveries and are not kept forever."""

from __future__ import annotations

import asyncio
import gc

import pytest

from factory.integrations.plane import inbound

pytestmark = pytest.mark.fast  # unit tests: no Temporal, no CLI


async def test_one_lock_per_issue_while_in_use_and_none_kept_after():
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str) -> None:
        async with inbound._issue_lock("issue-1"):
            order.append(f"{name} in")
            await release.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(hold("a"))
    second = asyncio.create_task(hold("b"))
    while not order:
        await asyncio.sleep(0)
    assert order == ["a in"] and inbound._issue_lock("issue-1").locked()  # b waits on the same lock
    release.set()
    await asyncio.gather(first, second)
    assert order == ["a in", "a out", "b in", "b out"]
    for i in range(100):
        async with inbound._issue_lock(f"issue-{i}"):
            pass
    del first, second
    gc.collect()
    assert len(inbound._issue_locks) == 0
