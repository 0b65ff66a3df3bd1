"""Which diff a task's page shows: the agent's live work while it runs, else the pushed branch.

While a task's agent runs or waits for an answer, its edits are in its worktree and not pushed: the
answer is the live diff (`factory.git.live_diff`), read from the worktree Factory made for it. Once
the task has finished, or when this process is not on the host holding the worktree, the answer is the
pushed branch's diff from the mirror (`factory.git.diff`), with a note saying why; with neither, a 409
that says why.

What this trusts: the task row (its id, status, repo, branch, base and `base_sha`, written by Factory)
and the paths Factory computes from them. The worktree of a workflow run's step is the run's shared
checkout, which the run made for its first step's task (`workflows/step_interpreter.py`).
"""

from __future__ import annotations

from sqlmodel import Session, func, select

from factory.config import FactoryConfig
from factory.domain.lifecycle import Conflict
from factory.git.clones import mirror_path
from factory.git.commands import GitError
from factory.git.diff import BranchDiff, branch_diff
from factory.git.live_diff import live_base, worktree_diff
from factory.git.repos import RepoError, resolve_repo
from factory.git.worktree_walk import task_worktree
from factory.store.tables import Task, TaskStatus

LIVE = frozenset({TaskStatus.in_progress, TaskStatus.awaiting_input})


def worktree_owner(session: Session, task: Task) -> int:
    """The task id whose worktree holds `task`'s work: its own, or its workflow run's first step's (blocking)."""
    if task.workflow_run_id is None or task.id is None:
        return int(task.id or 0)
    first = session.exec(select(func.min(Task.id)).where(Task.workflow_run_id == task.workflow_run_id)).one()
    return int(first or task.id)


async def task_diff(cfg: FactoryConfig, task: Task, owner: int) -> BranchDiff:
    """The diff a person reviews now: live from the worktree while the agent works, else the pushed branch's.

    Args:
        cfg: the configuration (workspace root, git credentials).
        task: the task's row.
        owner: the task id whose worktree holds the work (`worktree_owner`).

    Raises:
        Conflict: there is nothing to diff yet (no branch, or not pushed and not readable here); says why.
    """
    if not task.branch or not task.base_branch:
        raise Conflict(f"task {task.id} has no branch yet")
    try:
        ref = resolve_repo(cfg, task.repo)
    except RepoError as exc:
        raise Conflict(f"no diff for task {task.id}: {exc}") from exc
    note = ""
    if task.status in LIVE:
        mirror = mirror_path(cfg.workspace_path, ref.name)
        worktree = task_worktree(cfg.workspace_path, owner)
        try:
            if not worktree.is_dir() or worktree.is_symlink():  # checked again, without following, by the walk
                raise FileNotFoundError(worktree)
            base = await live_base(mirror, task.base_sha, task.base_branch, task.branch)
            return await worktree_diff(mirror, base, worktree, task.branch, task.base_branch)
        except FileNotFoundError:  # multi-host: the worktree is only on the host running the agent
            where = f"on {task.host}" if task.host else "on another host"
            note = f"The agent works {where}: its unpushed work cannot be read from this Factory's host."
        except (GitError, OSError) as exc:
            note = f"The agent's unpushed work could not be read: {exc}."
    try:
        out = await branch_diff(cfg, ref, task.branch, task.base_branch)
    except GitError as exc:
        raise Conflict(f"no diff for task {task.id}: {exc}" + (f" {note}" if note else "")) from exc
    out.note = note
    return out
