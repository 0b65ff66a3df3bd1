"""Hold tasks in each stage of their life, crash Factory, and check what is left.

The holds are outside Factory, where a slow or stuck service would be:
- preparing: the repo's mirror lock (`<workspace>/mirrors/<repo>.lock`, the flock that serialises
  fetches) held by the test, so `prepare_workspace` waits on it;
- pushing and cleaning up: a `pre-receive` hook in the bare remote (the server side of the push,
  which Factory's own hook-less git does not control) that holds a push of a branch named with a
  word while `<dir>/<word>.hold` exists;
- opening the PR: the GitHub stand-in holding `POST .../pulls` (`FakeGitHub.hold`);
- running: an agent in a long Bash command; waiting for an answer: an agent that asked.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

HOOK = """#!{python}
import pathlib, sys, time
holds = pathlib.Path({holds!r})
refs = sys.stdin.read().split()[2::3]
deadline = time.monotonic() + 300  # never hang a test run for good
for hold in holds.glob("*.hold"):
    if any(hold.stem in ref for ref in refs):
        (holds / (hold.stem + ".entered")).touch()
        while hold.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
"""


class PushHold:
    """A pre-receive hook in `remote` holding pushes of branches named with a given word."""

    def __init__(self, remote: Path, holds: Path):
        self.holds = holds
        holds.mkdir(parents=True, exist_ok=True)
        hook = remote / "hooks" / "pre-receive"
        hook.write_text(HOOK.format(python=sys.executable, holds=str(holds)))
        hook.chmod(0o755)

    def hold(self, word: str) -> None:
        (self.holds / f"{word}.hold").touch()

    def entered(self, word: str) -> bool:
        return (self.holds / f"{word}.entered").exists()

    def release_all(self) -> None:
        for hold in self.holds.glob("*.hold"):
            hold.unlink(missing_ok=True)


class FetchHold:
    """The mirror lock of one repo, held by the test: its tasks wait in `prepare_workspace`."""

    def __init__(self, workspace: Path, repo: str):
        path = workspace / "mirrors" / f"{repo}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # drops the flock
            self.fd = None


def processes_of(root: Path) -> list[str]:
    """Live processes (not this one) whose command line, working directory or environment names `root`.

    Agents (bwrap, the claude CLI, the commands it runs) carry the task's worktree or CLI home,
    both under the workspace root, in one of those; so do git commands in a worktree.
    """
    needle = str(root).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes()
            hit = needle in cmdline
            if not hit:
                hit = needle in os.readlink(entry / "cwd").encode() or needle in (entry / "environ").read_bytes()
        except OSError:
            continue
        if hit:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]
            found.append(f"{entry.name}: {command}")
    return found


async def started_activities(client: Client, workflow_id: str) -> set[str]:
    """The activity types a workflow has running right now (an attempt started, not finished)."""
    desc = await client.get_workflow_handle(workflow_id).describe()
    return {
        a.activity_type.name
        for a in desc.raw_description.pending_activities
        if a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    }


async def poll(predicate: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    """Wait for `predicate()` (sync or async) to be truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def task_of(api: httpx.AsyncClient, task_id: int) -> dict[str, Any]:
    r = await api.get(f"/api/tasks/{task_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def create_task(api: httpx.AsyncClient, title: str, scenario: str, repo: str = "demo") -> dict[str, Any]:
    body = {"title": title, "description": f"[[scenario:{scenario}]]", "repo": repo}
    r = await api.post("/api/tasks", params={"auto_run": "true"}, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def record_figures(path: Path, **row: Any) -> None:
    """Append one JSON line of figures (bench/chaos_figures.py turns the lines into bench/CHAOS.md)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"at": time.strftime("%Y-%m-%d %H:%M:%S"), **row}) + "\n")
