"""Workspace activities: one bare mirror per repo, one `git worktree` per task.

`prepare_workspace` runs on the shared queue (any host); it returns the queues of the
host that now holds the worktree, and every later step of the task runs there.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from factory.config import FactoryConfig
from factory.contracts import ChangesResult, RepoRef, WorkspaceInfo
from factory.git.commands import GitError, file_lock, git, slugify
from factory.git.repos import git_env


@dataclass
class PrepareInput:
    task_id: int
    title: str
    repo: RepoRef
    branch: str | None = None  # continue an existing branch


@dataclass
class FinalizeInput:
    task_id: int
    workspace: WorkspaceInfo
    repo: RepoRef
    message: str
    push: bool = True


@dataclass
class CleanupInput:
    task_id: int
    workspace: WorkspaceInfo
    repo: RepoRef
    wip_message: str = ""


class WorkspaceActivities:
    def __init__(self, cfg: FactoryConfig, host: str, host_queue: str, agent_queue: str):
        self.cfg = cfg
        self.host = host
        self.host_queue = host_queue
        self.agent_queue = agent_queue
        self.root = cfg.workspace_path
        self._defaults: dict[Path, str] = {}  # a mirror's default branch, read once per process

    def _mirror(self, repo: RepoRef) -> Path:
        return self.root / "mirrors" / (re.sub(r"[^A-Za-z0-9_.-]", "_", repo.name) + ".git")

    def worktree_path(self, task_id: int) -> Path:
        return self.root / "worktrees" / f"task-{task_id}"

    async def _sync_mirror(self, repo: RepoRef) -> tuple[Path, str]:
        mirror = self._mirror(repo)
        env = git_env(self.cfg, repo.url)
        async with file_lock(mirror.with_suffix(".lock")):
            if not (mirror / "HEAD").exists():
                if mirror.exists():
                    shutil.rmtree(mirror)
                mirror.parent.mkdir(parents=True, exist_ok=True)
                await git("clone", "--bare", "--end-of-options", repo.url, str(mirror), env=env, timeout=900)
                await git("config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*", cwd=mirror)
            await git("fetch", "--prune", "origin", cwd=mirror, env=env, timeout=900)
            default = repo.default_branch or self._defaults.get(mirror)
            if not default:
                default = (await git("symbolic-ref", "--short", "HEAD", cwd=mirror)).strip()
                self._defaults[mirror] = default
        return mirror, default

    @activity.defn
    async def prepare_workspace(self, inp: PrepareInput) -> WorkspaceInfo:
        """Fetch the repo's mirror and create (or reuse, on retry) the task's worktree."""
        try:
            mirror, default = await self._sync_mirror(inp.repo)
        except GitError as exc:
            raise ApplicationError(f"could not fetch {inp.repo.name}: {exc}", type="GitError") from exc
        path = self.worktree_path(inp.task_id)
        base_ref = f"refs/remotes/origin/{default}"
        try:
            base_sha = (await git("rev-parse", "--verify", base_ref, cwd=mirror)).strip()
        except GitError as exc:
            raise ApplicationError(
                f"{inp.repo.name} has no branch {default!r} to start from", type="GitError", non_retryable=True
            ) from exc
        branch = inp.branch or f"factory/task-{inp.task_id}-{slugify(inp.title)}"
        if not (path / ".git").exists():
            local = ""
            if inp.branch or activity.info().attempt > 1:  # a retry may find its branch half made
                await git("worktree", "prune", cwd=mirror)
                local = await git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", cwd=mirror, check=False)
            path.parent.mkdir(parents=True, exist_ok=True)
            if local.strip():
                await git("worktree", "add", "--end-of-options", str(path), branch, cwd=mirror)
            elif inp.branch:
                remote = f"refs/remotes/origin/{branch}"
                if not (await git("rev-parse", "--verify", "--quiet", remote, cwd=mirror, check=False)).strip():
                    raise ApplicationError(f"branch {branch!r} does not exist", type="GitError", non_retryable=True)
                await git("worktree", "add", "--no-track", "-b", branch, "--end-of-options", str(path), remote, cwd=mirror)
            else:
                await git("worktree", "add", "--no-track", "-b", branch, "--end-of-options", str(path), base_ref, cwd=mirror)
        return WorkspaceInfo(
            path=str(path),
            branch=branch,
            base_branch=default,
            host=self.host,
            host_queue=self.host_queue,
            agent_queue=self.agent_queue,
            base_sha=base_sha,
        )

    def _identity(self) -> list[str]:
        return ["-c", f"user.name={self.cfg.git_author_name}", "-c", f"user.email={self.cfg.git_author_email}"]

    async def _commit_all(self, path: str, message: str) -> bool:
        if not (await git("status", "--porcelain", cwd=path)).strip():
            return False
        await git("add", "-A", cwd=path)
        await git(*self._identity(), "commit", "--no-verify", "-q", "-m", message, cwd=path)
        return True

    async def _unpushed(self, ws: WorkspaceInfo) -> int:
        remote = f"refs/remotes/origin/{ws.branch}"
        has_remote = (await git("rev-parse", "--verify", "--quiet", remote, cwd=ws.path, check=False)).strip()
        since = remote if has_remote else f"refs/remotes/origin/{ws.base_branch}"
        return int((await git("rev-list", "--count", f"{since}..HEAD", cwd=ws.path)).strip() or 0)

    async def _push(self, ws: WorkspaceInfo, repo: RepoRef) -> None:
        await git(
            "push", "--no-verify", "origin", f"HEAD:refs/heads/{ws.branch}",
            cwd=ws.path, env=git_env(self.cfg, repo.url), timeout=600,
        )  # fmt: skip

    @activity.defn
    async def finalize_changes(self, inp: FinalizeInput) -> ChangesResult:
        """Commit what the agent left uncommitted and push the branch if it is ahead."""
        ws = inp.workspace
        try:
            committed = await self._commit_all(ws.path, inp.message)
            base = f"refs/remotes/origin/{ws.base_branch}"
            ahead = int((await git("rev-list", "--count", f"{base}..HEAD", cwd=ws.path)).strip() or 0)
            files, stat = _numstat(await git("diff", "--numstat", f"{base}...HEAD", cwd=ws.path))
            head = (await git("rev-parse", "HEAD", cwd=ws.path)).strip()
            pushed = False
            if inp.push and ahead > 0 and await self._unpushed(ws) > 0:
                await self._push(ws, inp.repo)
                pushed = True
        except GitError as exc:
            raise ApplicationError(str(exc), type="GitError") from exc
        marker = self.root / "run" / f"task-{inp.task_id}.preview"
        preview = marker.read_text().strip() if marker.exists() else None
        return ChangesResult(
            committed=committed, pushed=pushed or ahead > 0, commits_ahead=ahead,
            changed_files=files, diff_stat=stat, head_sha=head, preview_url=preview or None,
        )  # fmt: skip

    @activity.defn
    async def cleanup_workspace(self, inp: CleanupInput) -> None:
        """Push commits the remote lacks (never delete the branch), then remove the worktree."""
        ws = inp.workspace
        path = Path(ws.path)
        mirror = self._mirror(inp.repo)
        if (path / ".git").exists():
            try:
                if inp.wip_message:
                    await self._commit_all(ws.path, inp.wip_message)
                if await self._unpushed(ws) > 0:
                    await self._push(ws, inp.repo)
            except GitError as exc:
                activity.logger.warning("task %s: could not push %s before cleanup: %s", inp.task_id, ws.branch, exc)
                raise ApplicationError(str(exc), type="GitError") from exc
            await git("worktree", "remove", "--force", str(path), cwd=mirror, check=False)
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        if mirror.exists():
            await git("worktree", "prune", cwd=mirror, check=False)


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
