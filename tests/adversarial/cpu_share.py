"""Shared pieces of the CPU-share attacks: a spinner timed over a window both sides agree on, and whether
this host has a cpu cgroup controller at all."""

from __future__ import annotations

import textwrap
from pathlib import Path

# `spin(go)`: pinned to CPU 0, waits for the file `go` ("t0 t1", epoch seconds), spins from t0 to t1 and
# returns the CPU seconds it got meanwhile; both sides of a test run it, so their shares are compared
SPIN = textwrap.dedent("""
    import os, time
    os.sched_setaffinity(0, {0})
    def spin(go):
        while not os.path.exists(go) or len(open(go).read().split()) < 2:  # seen before its text is written
            time.sleep(0.01)
        t0, t1 = (float(x) for x in open(go).read().split())
        while time.time() < t0:
            time.sleep(0.002)
        c = time.process_time()
        while time.time() < t1:
            pass
        return time.process_time() - c
""")


def has_cpu_cgroup() -> bool:
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    return Path("/sys/fs/cgroup/cpu/cpu.shares").exists() or (v2.exists() and "cpu" in v2.read_text().split())
