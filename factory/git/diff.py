"""A task branch's diff against its base, read from the repo's bare mirror.

The task's own clone is gone once it finishes, and the branch lives on the remote: the mirror is
fetched (under the same per-repo lock the workspace activity takes), then `git diff base...branch`
gives what the branch changed since it left its base. Every command goes through Factory's safe
`git()` helper, so nothing an agent pushed runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from factory.config import FactoryConfig
from factory.contracts import RepoRef
from factory.git.clones import mirror_path, sync_mirror
from factory.git.commands import GitError, file_lock, git
from factory.git.repos import git_env

MAX_PATCH_CHARS = 400_000
"""The largest patch handed to a browser; past it the patch is cut (the file list stays whole)."""


@dataclass
class FileChange:
    """One file of the diff: its path and the lines added and deleted (None for binary files)."""

    path: str
    additions: int | None
    deletions: int | None


@dataclass
class BranchDiff:
    """What a branch changed since it left its base."""

    branch: str
    base: str
    files: list[FileChange] = field(default_factory=list)
    additions: int = 0
    deletions: int = 0
    patch: str = ""
    truncated: bool = False
    live: bool = False  # the agent's unpushed work, read from its worktree (factory/git/live_diff.py)
    as_of: str | None = None  # when a live diff was read
    skipped: list[str] = field(default_factory=list)  # what a live diff left out, and why (the first 50)
    skipped_count: int = 0
    note: str = ""  # why this is the answer (a live diff cut short; no worktree on this host)


def _numstat(out: str) -> list[FileChange]:
    files = []
    for line in out.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            add, dele, path = parts
            files.append(FileChange(path, int(add) if add.isdigit() else None, int(dele) if dele.isdigit() else None))
    return files


async def branch_diff(cfg: FactoryConfig, ref: RepoRef, branch: str, base: str) -> BranchDiff:
    """Fetch the repo's mirror and diff `origin/base...origin/branch`.

    Args:
        cfg: the configuration (workspace root, git credentials).
        ref: the resolved repo.
        branch: the task's branch.
        base: the branch it started from.

    Raises:
        GitError: the fetch failed, or the branch or its base is not on the remote.
    """
    mirror = mirror_path(cfg.workspace_path, ref.name)
    env = git_env(cfg, ref.url)
    mirror.parent.mkdir(parents=True, exist_ok=True)
    async with file_lock(mirror.with_suffix(".lock")):
        await sync_mirror(mirror, ref.url, env)
    head, start = f"refs/remotes/origin/{branch}", f"refs/remotes/origin/{base}"
    for name, r in ((branch, head), (base, start)):
        if not (await git("rev-parse", "--verify", "--quiet", f"{r}^{{commit}}", git_dir=mirror, check=False)).strip():
            raise GitError(f"branch {name!r} is not on the remote (yet)")
    spec = f"{start}...{head}"
    files = _numstat(await git("diff", "--numstat", "--no-renames", "--end-of-options", spec, git_dir=mirror))
    # the agent chose what was committed (a 1 GiB file is a 1 GiB patch): read no more than is shown; four
    # bytes a character at most, so a cut patch still decodes to more than MAX_PATCH_CHARS
    patch = await git(
        "diff", "--no-color", "--no-ext-diff", "--no-textconv", "--end-of-options", spec, git_dir=mirror,
        max_output=4 * (MAX_PATCH_CHARS + 1),
    )  # fmt: skip
    out = BranchDiff(branch=branch, base=base, files=files)
    out.additions = sum(f.additions or 0 for f in files)
    out.deletions = sum(f.deletions or 0 for f in files)
    out.truncated = len(patch) > MAX_PATCH_CHARS
    out.patch = patch[:MAX_PATCH_CHARS]
    return out
