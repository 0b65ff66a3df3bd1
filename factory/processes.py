"""Facts about processes from /proc, and the parent-death signal: how Factory knows a pid is still its own.

A pid alone names nothing for long (pids are reused after a restart); a pid with its start time
names one process for good.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child between fork and exec: be SIGKILLed when the thread that forked it dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


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
