"""`factory up` runs its API as a child process (factory.startup.run_child): a stop ends the child
(SIGTERM, then SIGKILL after the grace), and the child ending on its own stops the caller, with an
error unless it exited 0 (asked to stop, as a Ctrl-C asks both)."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from factory.startup import ChildEnded, run_child

pytestmark = pytest.mark.fast


async def test_a_stop_terminates_the_child_and_one_that_ignores_sigterm_is_killed_after_the_grace(tmp_path) -> None:
    stop = asyncio.Event()
    ready = tmp_path / "ready"
    ignoring = f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open({str(ready)!r}, 'w'); time.sleep(60)"
    running = asyncio.create_task(run_child([sys.executable, "-c", ignoring], stop, grace=0.5))
    while not ready.exists():  # SIGTERM is ignored from here on
        await asyncio.sleep(0.02)
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(running, 10)
    assert time.monotonic() - started < 5


async def test_a_child_that_fails_stops_the_caller_and_says_so() -> None:
    stop = asyncio.Event()
    with pytest.raises(ChildEnded, match="code 3"):
        await asyncio.wait_for(run_child([sys.executable, "-c", "raise SystemExit(3)"], stop), 10)
    assert stop.is_set()


async def test_a_child_that_exits_0_was_asked_to_stop_and_stops_the_caller_quietly() -> None:
    stop = asyncio.Event()
    await asyncio.wait_for(run_child([sys.executable, "-c", "pass"], stop), 10)
    assert stop.is_set()
