"""Workspace activities: one bare mirror per repo, one clone of it per task (`factory.git.clones`).

`prepare_workspace` runs on the shared queue (any host); it returns the queues of the
host that now holds the worktree, and every later step of the task runs there.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._heartbeat import heartbeats
from activities.environments import remove_environments
from factory.config import FactoryConfig
from factory.contracts import (  # noqa: F401 (the wire forms live in factory.contracts)
    ChangesResult,
    CleanupInput,
    FinalizeInput,
    PrepareInput,
    RepoRef,
    TaskEvent,
    TaskUpdate,
    WorkspaceInfo,
)
from factory.domain.errors import git_retryable
from factory.domain.text import clip
from factory.environments.broker import EnvironmentBroker
from factory.environments.compose import namespace
from factory.environments.docker import preview_url_of
from factory.environments.marks import Marks
from factory.git.clones import TaskClone, UnsafeCloneError, mirror_path, remote_refs, sync_mirror
from factory.git.commands import GitError, file_lock, git, slugify
from factory.git.repos import git_env
from factory.git.worktree_walk import task_worktree
from factory.integrations.errors import failure

Announce = Callable[[TaskUpdate, TaskEvent], Awaitable[list[str]]]
"""Records a task's start and posts its event; the channels that want it (`RecordActivities.announce`)."""


class WorkspaceActivities:
    def __init__(
        self, cfg: FactoryConfig, host: str, host_queue: str, agent_queue: str, broker: EnvironmentBroker | None = None,
        announce: Announce | None = None,
    ):  # fmt: skip
        self.cfg = cfg
        self.announce = announce  # a prepare asked to announce the start (PrepareInput.started) does it with this
        self.broker = broker  # the test environments a cleanup removes first (CleanupInput.environments)
        self.host = host
        self.host_queue = host_queue
        self.agent_queue = agent_queue
        self.root = cfg.workspace_path
        self._defaults: dict[Path, str] = {}  # a mirror's default branch, read once per process
        self.marks = Marks(cfg.workspace_path)  # a task that never started a preview costs no docker call

    def _mirror(self, repo: RepoRef) -> Path:
        return mirror_path(self.root, repo.name)

    def _clone(self, path: str | Path, repo: RepoRef) -> TaskClone:
        return TaskClone(Path(path), self._mirror(repo), repo.url, self.cfg.git_author_name, self.cfg.git_author_email)

    def worktree_path(self, task_id: int) -> Path:
        return task_worktree(self.root, task_id)  # the one rule: the live diff reads the same place

    async def _sync_mirror(self, repo: RepoRef) -> tuple[Path, str]:
        mirror = self._mirror(repo)
        env = git_env(self.cfg, repo.url)
        async with file_lock(mirror.with_suffix(".lock")):
            await sync_mirror(mirror, repo.url, env)
            default = repo.default_branch or self._defaults.get(mirror)
            if not default:
                default = (await git("symbolic-ref", "--short", "HEAD", git_dir=mirror)).strip()
                self._defaults[mirror] = default
        return mirror, default

    @activity.defn
    @heartbeats
    async def prepare_workspace(self, inp: PrepareInput) -> WorkspaceInfo:
        """Fetch the repo's mirror and create (or reuse, on retry) the task's worktree."""
        try:
            mirror, default = await self._sync_mirror(inp.repo)
        except GitError as exc:
            raise _failure(exc, f"could not fetch {inp.repo.name}: ") from exc
        path = self.worktree_path(inp.task_id)
        base_ref = f"refs/remotes/origin/{default}"
        try:
            refs = await remote_refs(mirror)  # read once: the base, the branch, and the new clone's refs
        except GitError as exc:
            raise _failure(exc) from exc
        base_sha = refs.get(base_ref, "")
        if not base_sha:
            raise ApplicationError(
                f"{inp.repo.name} has no branch {default!r} to start from", type="GitError", non_retryable=True
            )
        branch = inp.branch or f"factory/task-{inp.task_id}-{slugify(inp.title)}"
        clone = self._clone(path, inp.repo)
        announced = None
        telling = inp.started is not None and self.announce is not None
        try:
            if clone.exists():  # a retry: a clone is renamed into place only once complete
                await clone.secure(branch)
            else:
                start, found = base_ref, base_sha  # a new branch starts at the base just read
                if inp.branch:
                    start = f"refs/remotes/origin/{branch}"
                    found = refs.get(start, "")
                if inp.moved and not found:  # nothing was pushed before the host was lost
                    start, found = base_ref, base_sha
                if inp.branch and not found:
                    raise ApplicationError(f"branch {branch!r} does not exist", type="GitError", non_retryable=True)
                making = clone.create(branch, start, found, refs=refs)
                if telling:  # told while the clone is made (neither waits on the other; a clone that then fails
                    # fails a task that has started, and says so next)
                    announced = (await _all_ended(making, self._tell(inp, branch, default, base_sha)))[1]
                else:
                    await making
        except GitError as exc:
            raise _failure(exc) from exc
        if telling and announced is None:  # a retry that found its clone made
            announced = await self._tell(inp, branch, default, base_sha)
        carried = ""
        if inp.moved:
            carried = await clone.git("log", "--oneline", "--stat", "-n", "30", f"{base_sha}..HEAD", check=False)
        return WorkspaceInfo(
            path=str(path),
            branch=branch,
            base_branch=default,
            host=self.host,
            host_queue=self.host_queue,
            agent_queue=self.agent_queue,
            base_sha=base_sha,
            shared_objects=str(clone.shared_objects),
            carried=clip(carried.strip(), 4000),
            announced=announced,
        )

    async def _tell(self, inp: PrepareInput, branch: str, base: str, base_sha: str) -> list[str]:
        """The task's start (`PrepareInput.started`): its row and its board post, written once whatever the
        retries (the post is keyed by this activity); the channels that want the event."""
        assert inp.started is not None and self.announce is not None
        row = TaskUpdate(task_id=inp.task_id, branch=branch, base_branch=base, host=self.host, base_sha=base_sha or None)
        return await self.announce(row, dataclasses.replace(inp.started, branch=branch))

    @activity.defn
    async def ping_host(self) -> str:
        """Answer on this host's queue: a task's workflow asks whether the host holding its worktree is alive."""
        return self.host

    @activity.defn
    @heartbeats
    async def finalize_changes(self, inp: FinalizeInput) -> ChangesResult:
        """Commit what the agent left uncommitted and push the branch if it is ahead."""
        return await self.finalize(inp)

    async def finalize(self, inp: FinalizeInput) -> ChangesResult:
        """The finalize step's work; an agent run that ends its session does it too (activities/_agent_push.py)."""
        ws = inp.workspace
        clone = self._clone(ws.path, inp.repo)
        try:
            refs = await clone.secure(ws.branch)  # whatever the agent wrote under .git, from here on Factory's
            committed = await clone.commit_all(inp.message)
            base = f"refs/remotes/origin/{ws.base_branch}"
            # a commit just made is on neither the base nor the remote's branch: it goes out at once, beside
            # three reads of the same commits (nothing writes the clone meanwhile)
            pushed = inp.push and committed
            early = [clone.push(ws.branch, git_env(self.cfg, inp.repo.url))] if pushed else []
            ahead, numstat, head, *_ = await _all_ended(clone.count(base), clone.numstat(base), clone.head(), *early)
            files, stat = _numstat(numstat)
            if not pushed and inp.push and ahead > 0:
                if await clone.unpushed(ws.branch, ws.base_branch, ahead, refs) > 0:
                    await clone.push(ws.branch, git_env(self.cfg, inp.repo.url))
                    pushed = True
        except GitError as exc:
            raise _failure(exc) from exc
        # announced from Factory's own record of the preview it started, never a file the agent wrote
        ns = namespace(self.cfg.temporal.id_prefix)  # this deployment's preview, not another's task of this id
        preview = await preview_url_of(inp.task_id, ns) if self.marks.may_have(inp.task_id, "preview") else None
        return ChangesResult(
            committed=committed, pushed=pushed or ahead > 0, commits_ahead=ahead,
            changed_files=files, diff_stat=stat, head_sha=head, preview_url=preview or None,
        )  # fmt: skip

    @activity.defn
    @heartbeats
    async def cleanup_workspace(self, inp: CleanupInput) -> None:
        """Push commits the remote lacks (never delete the branch), then remove the worktree.

        With `environments`, the task's environments of those kinds go first; when `pushed` (a done task,
        whose finalize pushed what it committed) no git runs: the clone is only removed.
        """
        ws = inp.workspace
        if inp.environments:
            await remove_environments(self.cfg, self.marks, self.broker, inp.task_id, inp.environments)
        clone = self._clone(ws.path, inp.repo)
        if clone.exists() and not inp.pushed:
            try:
                await clone.secure(ws.branch)
                if inp.wip_message:
                    await clone.commit_all(inp.wip_message)
                if await clone.unpushed(ws.branch, ws.base_branch) > 0:
                    await clone.push(ws.branch, git_env(self.cfg, inp.repo.url))
            except GitError as exc:
                activity.logger.warning("task %s: could not push %s before cleanup: %s", inp.task_id, ws.branch, exc)
                if isinstance(exc, UnsafeCloneError):
                    clone.remove()  # tampered with: nothing in it is pushed, and it is not kept around
                raise _failure(exc) from exc
        await asyncio.to_thread(clone.remove)  # a checkout can be large: not on the loop that heartbeats

    @activity.defn
    async def clean_up_here(self, inp: CleanupInput) -> bool:
        """A done task's cleanup inside its workflow task, when it can be: True when it was done here.

        Run as a local activity by the worker that holds the workflow task (its answer is recorded, so a
        replay takes the same path). It does the work only when that is this worktree's host and the work is
        quick: the task is done (its finalize pushed everything: no git runs) and started no environment
        here (no docker call). Otherwise it does nothing and answers False, and the workflow runs
        `cleanup_workspace` on the host's queue as before. One activity and one workflow task fewer per task:
        four calls to Temporal and four writes of the workflow's state there (bench/PIPELINE.md).
        """
        ws = inp.workspace
        if (ws.host, ws.host_queue) != (self.host, self.host_queue) or not inp.pushed:
            return False
        if any(self.marks.may_have(inp.task_id, kind) for kind in inp.environments):
            return False  # docker to call: on the host's own step, under its heartbeat
        await remove_environments(self.cfg, self.marks, self.broker, inp.task_id, inp.environments)  # none: forgets
        await asyncio.to_thread(self._clone(ws.path, inp.repo).remove)
        return True


async def _all_ended(*steps: Awaitable[Any]) -> list[Any]:
    """The steps' results, side by side; the first failure raised once all have ended (no git runs on after it)."""
    done = await asyncio.gather(*steps, return_exceptions=True)
    if failed := next((r for r in done if isinstance(r, BaseException)), None):
        raise failed
    return done


def _failure(exc: GitError, prefix: str = "") -> ApplicationError:
    """A git failure for the workflow: a tampered clone, a rejected push or refused credentials are not
    retried (factory/domain/errors.py); a network or server error is, within the step's window."""
    retryable = not isinstance(exc, UnsafeCloneError) and git_retryable(str(exc))
    return failure(f"{prefix}{exc}", "GitError", retryable)


def _numstat(out: str) -> tuple[list[str], str]:
    """Changed files and a shortstat-like summary from `git diff --numstat`."""
    files, added, deleted = [], 0, 0
    for line in out.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            files.append(parts[2])
            added += int(parts[0]) if parts[0].isdigit() else 0
            deleted += int(parts[1]) if parts[1].isdigit() else 0
    if not files:
        return [], ""
    return files, f"{len(files)} file{'s' if len(files) != 1 else ''} changed, {added} insertions(+), {deleted} deletions(-)"
