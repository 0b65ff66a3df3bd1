"""What lets the unprivileged test user (`factory-test`) reach the project and exist at all, set up once per
run: the search bit on the clone's 0700 parents (tests/conftest.py's `pytest_configure`, in xdist's controller
or plain pytest, never per worker), and the user itself, made under a lock (workers may ask at once)."""

from __future__ import annotations

import fcntl
import os
import pwd
import subprocess
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_USER = "factory-test"


def open_project_to_other_users() -> Callable[[], None]:
    """Give each ancestor of the project outside /root (handled by `_python_for_user`) search permission
    (x, not read), as a clone made under `mktemp -d` (0700) is not reachable; returns what gives it back.
    The project's own files are world-readable as git wrote them."""
    changed: list[tuple[Path, int]] = []
    for parent in ROOT.parents:
        if str(parent) == "/" or parent == Path("/root") or Path("/root") in parent.parents:
            continue
        mode = parent.stat().st_mode & 0o7777
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)
            changed.append((parent, mode))

    def restore() -> None:
        for parent, mode in changed:
            os.chmod(parent, mode)

    return restore


def test_user() -> tuple[int, int]:
    """(uid, gid) of `factory-test`, made with `useradd -r -M` if missing (one worker at a time)."""
    with open("/tmp/factory-test-user.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pw = pwd.getpwnam(TEST_USER)
        except KeyError:
            subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", TEST_USER], check=True)
            pw = pwd.getpwnam(TEST_USER)
    return pw.pw_uid, pw.pw_gid
