"""Facts about processes from /proc, and the parent-death signal: how Factory knows a pid is still its own.

A pid alone names nothing for long (pids are reused after a restart); a pid with its start time
names one process for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import shutil
import signal
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child between fork and exec: be SIGKILLed when the thread that forked it dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def absolute_path(path: str | None) -> str:
    """A PATH value with its empty and relative entries dropped (`DEFAULT_PATH` if none is left).

    An empty or relative entry (`:/usr/bin`, `.`, `bin`, `node_modules/.bin`) names a directory under
    whatever the current one is; an agent's run starts in its checkout, which the agent writes.
    """
    kept = [d for d in (path or "").split(os.pathsep) if os.path.isabs(d)]
    return os.pathsep.join(dict.fromkeys(kept)) or DEFAULT_PATH


_FOUND: dict[tuple[str, str], str] = {}


def which(name: str) -> str | None:
    """Where the program `name` is, as an absolute path: on the worker's PATH, in its absolute directories only.

    A program found is remembered for that PATH while it stays executable (a search is ~50 µs here, and
    Factory starts git ~16 times per task); one not found is looked for again each time.
    """
    path = absolute_path(os.environ.get("PATH"))
    key = (name, path)
    hit = _FOUND.get(key)
    if hit is not None and os.access(hit, os.X_OK):
        return hit
    found = shutil.which(name, path=path)
    if found is None:
        return None
    found = os.path.abspath(found)
    if "/" not in name:  # a name with a directory part is the cwd's: not remembered
        _FOUND[key] = found
    return found


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def process_cmdline(pid: int) -> list[str]:
    """The process's argv ([] if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def process_program(pid: int) -> str:
    """The base name of the program a process runs (argv[0]), or "" if it is gone."""
    argv = process_cmdline(pid)
    return os.path.basename(argv[0]) if argv else ""


_SESSION_FLAGS = (b"--resume", b"--session-id", b"--session", b"resume", b"-r")


def reap(marker: str, within: str, timeout: float = 10.0) -> int:
    """SIGKILL every live process whose command line holds `marker` (a run's session id) and whose working
    directory is `within` (the run's checkout) or below it, and wait, at most `timeout` seconds, until none is
    left; how many were killed.

    Killing the recorded process group kills the sandbox's outer bwrap; the CLI inside its PID namespace
    (another session) dies a moment later, when the kernel gets to it. A retry that looked for the session
    file in that moment saw none, started afresh with the same id, and the old CLI then saved it ("Session
    ID ... is already in use"). Only the run's own processes carry its id and work in its checkout: the id
    reached Factory on a line the agent can write, so it alone names no process to kill.
    """
    needle, me, killed = marker.encode(), os.getpid(), set()
    top = os.path.realpath(within)
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                # the id as a CLI takes it (`--resume <id>`, Codex's `resume <id>`), not as a part of any argument
                if not any(a == needle and b in _SESSION_FLAGS for b, a in zip(argv, argv[1:], strict=False)):
                    continue
                cwd = os.readlink(f"/proc/{entry}/cwd")
                if cwd.endswith(" (deleted)") and os.stat(f"/proc/{entry}/cwd").st_nlink == 0:
                    cwd = cwd.removesuffix(" (deleted)")  # a checkout removed (and maybe made anew) since
                if cwd != top and not cwd.startswith(top + "/"):
                    continue
                with open(f"/proc/{entry}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                        continue
                os.kill(int(entry), signal.SIGKILL)
            except (OSError, IndexError):
                continue
            killed.add(entry)
            left.append(entry)
        if not left or time.monotonic() > deadline:
            return len(killed)
        time.sleep(0.02)


@functools.cache
def kill_leaderless_groups(run_dir: Path) -> int:
    """Once per process and run dir: SIGKILL the process groups of `run_dir/task-*.pid` files whose leader
    is gone; how many groups were signalled.

    A sandbox can outlive the worker that started it (bwrap's namespace init and egress bridge did, for
    hours): its group still bears the dead leader's pid, which the kernel does not reuse while the group
    lives. A live leader (another worker's running agent, or a reused pid) is never touched.
    """
    killed = 0
    for pidfile in run_dir.glob("task-*.pid"):
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if pid > 1 and process_start_time(pid) is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                killed += 1
    return killed


async def drain(stream: asyncio.StreamReader | None) -> None:
    """Read a child's pipe to its end, keeping nothing."""
    while stream is not None and await stream.read(65536):
        pass


async def read_to_end(stream: asyncio.StreamReader | None, keep: int) -> bytes:
    """Read a child's pipe to its end, keeping only its last `keep` bytes (a child an agent runs can print
    without end)."""
    buf = b""
    while stream is not None and (chunk := await stream.read(65536)):
        buf = (buf + chunk)[-keep:]
    return buf


async def kill_and_collect(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL an asyncio child (if still running) and wait for it, reading its pipes to their end.

    On Python < 3.12 `Process.wait()` returns only once every pipe of the child is closed too, and a pipe
    nobody reads may be paused (its reader's buffer full, so its end is never seen): a child killed after
    a burst of output was waited for forever (CPython gh-119710). Its readers must have stopped (cancelled
    or given up) before this runs.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await asyncio.gather(drain(proc.stdout), drain(proc.stderr))
    await proc.wait()
