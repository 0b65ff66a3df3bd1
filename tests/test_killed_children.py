"""A child Factory stops reading and kills is waited for, not forever.

On Python < 3.12 asyncio's `Process.wait()` returns only once the child's pipes are closed too, and a
pipe whose reader's buffer is full is paused: its end is never seen. The diff of a huge file the agent
committed (read up to a cap, then git is killed) hung the task page this way on a loaded machine; so
did a git command, or a docker one, killed at its timeout after a burst of output.

The children here make the burst certain: each enlarges its stdout pipe to 1 MiB and fills it in one
write, so asyncio's first read takes 256 KiB into a reader whose limit is 64 KiB, and pauses the pipe.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from factory.git.commands import _capped
from factory.processes import kill_and_collect

pytestmark = pytest.mark.fast

_BURST = (
    "import fcntl, os, sys, time\n"
    "fcntl.fcntl(1, 1031, 1 << 20)\n"  # F_SETPIPE_SZ: the whole burst fits in the pipe at once
    "os.write(1, b'x' * (1 << 20))\n"
    "time.sleep(3600)\n"
)


async def _burst() -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BURST, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    await proc.stdout.readexactly(1)  # the burst is in: more than the reader's limit is buffered, the pipe paused
    return proc


async def test_output_read_up_to_a_cap_then_the_child_killed_ends() -> None:
    proc = await _burst()
    out, _err = await asyncio.wait_for(_capped(proc, 64 * 1024), 20)
    assert len(out) == 64 * 1024 and proc.returncode is not None


async def test_a_child_killed_while_its_pipe_is_paused_is_collected() -> None:
    proc = await _burst()
    await asyncio.wait_for(kill_and_collect(proc), 20)
    assert proc.returncode is not None

