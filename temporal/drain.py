"""Draining a worker: no new tasks or agent runs here, the running ones finish, then the process exits.

`factory worker` drains on SIGTERM (what systemd sends) and when `factory worker --drain` asks it.
While draining, this host's agent queue stops polling, and a task's first step (preparing its
worktree) is refused here so that another host takes it; workflows and this host's git steps go
on, so a running task finishes: its agent's run ends, its work is pushed and its worktree removed.
A run still going after `workers.drain_timeout_seconds` has its work committed and pushed, and is
handed back: cancelled here, so Temporal retries it, and failover prepares it on another host
from that push (workflows/failover.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from factory.config import FactoryConfig
from factory.contracts import AgentRequest
from factory.git.clones import TaskClone, mirror_path
from factory.git.commands import GitError
from factory.git.repos import git_env, resolve_repo

log = logging.getLogger("factory.worker")


@dataclass
class HostWork:
    """What this host is doing: agent runs in flight and the host steps finished, by task."""

    draining: bool = False
    running: dict[asyncio.Task[Any], AgentRequest] = field(default_factory=dict)
    finished: set[tuple[str, int]] = field(default_factory=set)  # (activity type, task id)
    parked: set[int] = field(default_factory=set)  # tasks whose run ended with a question
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def interceptor(self) -> Interceptor:
        """The worker interceptor that keeps this record (and refuses new tasks while draining)."""
        return _Interceptor(self)

    async def wait(self, done: Callable[[], bool], deadline: float, stop: asyncio.Event) -> bool:
        """Wait until `done()` holds; False when the deadline passed or `stop` was set first."""
        loop = asyncio.get_running_loop()
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0 or stop.is_set():
                return False
            self.changed.clear()
            waiters = [asyncio.ensure_future(self.changed.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
        return True

    def cancel_runs(self) -> None:
        """Cancel the agent runs in flight (each kills its agent); Temporal retries them."""
        for task in list(self.running):
            task.cancel()


class _Interceptor(Interceptor):
    def __init__(self, work: HostWork):
        self.work = work

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self.work)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, work: HostWork):
        super().__init__(next)
        self.work = work

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        kind = activity.info().activity_type
        arg = input.args[0] if input.args else None
        if kind == "prepare_workspace" and self.work.draining:
            raise ApplicationError(f"{activity.info().task_queue}: this host is draining", type="HostDraining")
        task = asyncio.current_task()
        if kind == "run_agent" and isinstance(arg, AgentRequest) and task is not None:
            self.work.running[task] = arg
        try:
            result = await self.next.execute_activity(input)
        finally:
            if task is not None:
                self.work.running.pop(task, None)
            self.work.changed.set()
        task_id = getattr(arg, "task_id", None)
        if isinstance(task_id, int):
            self.work.finished.add((kind, task_id))
            if kind == "run_agent" and getattr(result, "question", None) is not None:
                self.work.parked.add(task_id)
            if kind == "run_agent" and getattr(result, "changes", None) is not None:
                self.work.finished.add(("finalize_changes", task_id))  # the run pushed its work itself
            if kind == "clean_up_here" and result is True:
                self.work.finished.add(("cleanup_workspace", task_id))  # removed here, in the workflow task
        return result


async def drain(cfg: FactoryConfig, work: HostWork, agent_worker: Any, stop: asyncio.Event) -> None:
    """Take no new work, let the running tasks finish (bounded), hand back what is left; then return."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.workers.drain_timeout_seconds
    work.draining = True
    in_flight = list(work.running.values())
    log.info("draining: no new tasks or agent runs; %d agent run(s) to finish", len(in_flight))
    no_more_runs = asyncio.create_task(agent_worker.shutdown())  # stops polling; the runs go on
    if not await work.wait(lambda: not work.running, deadline, stop):
        left = list(work.running.values())
        log.warning("drain bound reached: pushing and handing back %d agent run(s)", len(left))
        work.cancel_runs()
        await work.wait(lambda: not work.running, loop.time() + 30, asyncio.Event())
        await push_work_in_progress(cfg, left)
        in_flight = [r for r in in_flight if r not in left]
    # the finished runs' tasks push their work (finalize) and, owning their worktree, remove it (cleanup)
    steps = [
        ("cleanup_workspace" if r.workflow_run_id is None else "finalize_changes", r.task_id)
        for r in in_flight
        if r.task_id not in work.parked
    ]
    if not await work.wait(lambda: all(s in work.finished or s[1] in work.parked for s in steps), deadline, stop):
        log.warning("drain bound reached before every running task's steps on this host were done")
    await no_more_runs


async def push_work_in_progress(cfg: FactoryConfig, runs: Iterable[AgentRequest]) -> None:
    """Commit and push what the handed-back runs left, so the host that takes them over has it."""
    for req in runs:
        try:
            ref = resolve_repo(cfg, req.repo_name)
            clone = TaskClone(
                Path(req.cwd), mirror_path(cfg.workspace_path, ref.name), ref.url, cfg.git_author_name,
                cfg.git_author_email,
            )  # fmt: skip
            await clone.secure(req.branch)  # whatever the agent wrote under .git, Factory's from here on
            await clone.commit_all(f"WIP: {req.title} (task #{req.task_id}, handed back by a draining worker)")
            if int((await clone.git("rev-list", "--count", "HEAD", "--not", "--remotes=origin")).strip() or 0):
                await clone.push(req.branch, git_env(cfg, ref.url))
        except (GitError, OSError, ValueError) as exc:
            log.warning("task %s: the work in progress could not be pushed: %s", req.task_id, exc)


def pid_file(cfg: FactoryConfig, host: str) -> Path:
    """Where a running `factory worker` writes its process id (for `factory worker --drain`)."""
    return cfg.data_path / f"worker-{host}.pid"


def write_pid(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(os.getpid()))
