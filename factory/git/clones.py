"""One bare mirror per repo, one clone of it per task: the layout that keeps git out of an agent's reach.

A task's checkout (`workspace_root/worktrees/task-N`) is a repository of its own, with its own
`.git` directory inside it. It borrows the mirror's objects through `objects/info/alternates`
(the sandbox shows the mirror's `objects` directory read-only, and nothing else of the mirror), and
holds its own refs, index, config and hooks. So whatever the agent writes under `.git` changes that
task's repository and nothing else: not the mirror, not another task.

Before Factory runs git in a task's clone it calls `TaskClone.secure()`, which refuses a `.git`
that is not a plain directory or holds a symlink (either could send Factory's writes elsewhere),
drops a planted `commondir`, and rewrites `.git/config` and the alternates file from Factory's own
template: aliases, `sshCommand`, filter/diff/merge drivers, `include`/`includeIf`, credential
helpers, `core.fsmonitor`, `core.hooksPath` and the rest the agent may have written are gone.
`factory.git.commands.git` then adds its own safe `-c` options and minimal environment. Pushes go
from the clone straight to the real remote with the token header (`factory.git.repos.git_env`).
See "Factory's git and the agent's checkout" in docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.git.commands import GitError, git

MIRROR_FETCH = "+refs/heads/*:refs/remotes/origin/*"


class UnsafeCloneError(GitError):
    """A task's `.git` was tampered with in a way that could send Factory's git elsewhere."""


def _special(path: str) -> bool:
    """Neither a regular file nor a directory (a FIFO, a socket, a device), by lstat: never opened."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def mirror_path(root: Path, repo_name: str) -> Path:
    """Where the bare mirror of `repo_name` lives under `workspace_root`."""
    return root / "mirrors" / (re.sub(r"[^A-Za-z0-9_.-]", "_", repo_name) + ".git")


def _quote(value: str) -> str:
    """A git-config value in double quotes (so `#`, `;` and spaces stay literal)."""
    if any(c in value for c in "\n\r\0"):
        raise ValueError(f"a git config value may not hold a line break: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _atomic_write(path: Path, text: str) -> None:
    """Replace `path` (a planted symlink included, never its target) with `text`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".factory-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _core(object_format: str, bare: bool) -> str:
    sha256 = object_format == "sha256"
    text = (
        "[core]\n"
        f"\trepositoryformatversion = {1 if sha256 else 0}\n"
        "\tfilemode = true\n"
        f"\tbare = {'true' if bare else 'false'}\n"
        f"\tlogallrefupdates = {'false' if bare else 'true'}\n"
    )
    return text + ("[extensions]\n\tobjectformat = sha256\n" if sha256 else "")


def mirror_config(url: str, object_format: str = "sha1") -> str:
    """The whole `config` of a mirror. Task clones borrow its objects, so its gc never drops any:
    unreachable objects go to a cruft pack and are kept (a force-pushed base may still be a task's)."""
    return (
        _core(object_format, bare=True)
        + f'[remote "origin"]\n\turl = {_quote(url)}\n\tfetch = {MIRROR_FETCH}\n'
        + "[gc]\n\tcruftPacks = true\n\tpruneExpire = never\n"
    )


def clone_config(url: str, object_format: str, author_name: str, author_email: str) -> str:
    """The whole `.git/config` of a task's clone; nothing in it can run a program.

    The identity is there for the agent's own commits inside the sandbox (it has no global config).
    """
    return (
        _core(object_format, bare=False)
        + f'[remote "origin"]\n\turl = {_quote(url)}\n\tfetch = {MIRROR_FETCH}\n'
        + f"[user]\n\tname = {_quote(author_name)}\n\temail = {_quote(author_email)}\n"
    )


_FORMATS: dict[Path, str] = {}  # a mirror's hash algorithm never changes while the mirror exists


async def object_format(mirror: Path) -> str:
    """The mirror's hash algorithm (`sha1` or `sha256`), read by Factory from Factory's mirror (once per process)."""
    if mirror not in _FORMATS:
        out = await git(
            "config", "--file", str(mirror / "config"), "extensions.objectformat", git_dir=None, check=False
        )
        _FORMATS[mirror] = out.strip().lower() or "sha1"
    return _FORMATS[mirror]


async def sync_mirror(mirror: Path, url: str, env: Mapping[str, str]) -> None:
    """Create the bare mirror if missing, restore its config, and fetch. Callers hold the repo lock."""
    if not (mirror / "HEAD").exists():
        if mirror.exists():
            shutil.rmtree(mirror)
        mirror.parent.mkdir(parents=True, exist_ok=True)
        _FORMATS.pop(mirror, None)  # a new clone of the remote: read its format again
        await git(
            "clone", "--bare", "--template=", "--end-of-options", url, str(mirror), git_dir=None, env=env, timeout=900
        )  # fmt: skip
    # Rewritten each time: it undoes anything an older layout let an agent write into the mirror.
    _atomic_write(mirror / "config", mirror_config(url, await object_format(mirror)))
    # named with --git-dir: a `.git` planted inside the mirror is never discovered (and never configures this)
    await git("fetch", "--prune", "origin", git_dir=mirror, env=env, timeout=900)


async def _known(refs: dict[str, str]) -> dict[str, str]:
    """Refs already read, as an awaitable beside a read still to make."""
    return dict(refs)


async def remote_refs(git_dir: Path) -> dict[str, str]:
    """The repository's remote-tracking refs and tags, by name (`.../HEAD` left out)."""
    fmt = "--format=%(objectname) %(refname)"
    out = await git("for-each-ref", fmt, "refs/remotes/origin/", "refs/tags/", git_dir=git_dir)
    refs = {}
    for line in out.splitlines():
        sha, _, name = line.partition(" ")
        if name and not name.endswith("/HEAD"):
            refs[name] = sha
    return refs


@dataclass(frozen=True)
class TaskClone:
    """A task's own clone of the mirror; every method runs Factory's git in it safely.

    Attributes:
        path: the checkout (`workspace_root/worktrees/task-N`), with `.git` inside.
        mirror: the bare mirror whose objects the clone borrows.
        url: the real remote; pushes go there.
        author_name: Factory's commit identity (`git_author_name`).
        author_email: Factory's commit e-mail (`git_author_email`).
    """

    path: Path
    mirror: Path
    url: str
    author_name: str
    author_email: str

    @property
    def git_dir(self) -> Path:
        return self.path / ".git"

    @property
    def shared_objects(self) -> Path:
        """The mirror's objects directory: the one path outside the checkout the clone reads."""
        return self.mirror / "objects"

    async def git(self, *args: str, env: Mapping[str, str] | None = None, **kw: Any) -> str:
        """git in this clone, with the git dir and work tree named (no discovery up the tree); `kw`: `git`'s."""
        return await git(*args, git_dir=self.git_dir, work_tree=self.path, cwd=self.path, env=env, **kw)

    def exists(self) -> bool:
        return os.path.lexists(self.git_dir)

    async def create(self, branch: str, start: str, start_sha: str = "", refs: dict[str, str] | None = None) -> None:
        """Make the clone, on a new branch `branch` at `start` (a ref or sha of the mirror; `start_sha`: its
        commit, when the caller has just read it; `refs`: the mirror's remote refs, when it has just read them).

        It is built beside its final place and renamed into it, so a clone that exists is complete
        and a retried prepare reuses it.
        """
        staging = self.path.with_name(f".{self.path.name}.new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        fmt = await object_format(self.mirror)
        start_sha = (
            start_sha
            or (
                await git("rev-parse", "--verify", "--end-of-options", f"{start}^{{commit}}", git_dir=self.mirror)
            ).strip()
        )
        await git(
            "init", "-q", "--template=", f"--object-format={fmt}", f"--initial-branch={branch}", "--", str(staging),
            git_dir=None,
        )  # fmt: skip
        building = TaskClone(staging, self.mirror, self.url, self.author_name, self.author_email)
        # the mirror's refs and the task's branch in one transaction
        await building.secure(fresh=True, refs=refs, branch_at=(f"refs/heads/{branch}", start_sha))
        await building.git("reset", "-q", "--hard", "HEAD")
        if self.path.is_symlink() or self.path.exists():  # a directory with no repository in it: debris
            self._remove_checkout()
        os.rename(staging, self.path)

    async def secure(
        self,
        branch: str | None = None,
        fresh: bool = False,
        refs: dict[str, str] | None = None,
        branch_at: tuple[str, str] | None = None,
    ) -> dict[str, str]:
        """Make the clone safe for Factory's git, whatever the agent did to it; then refresh refs.

        Args:
            branch: the task's branch. Its remote-tracking ref is reset to the mirror's like every other
                (dropped when the mirror has not fetched it yet): the agent can write that ref, and one
                set to HEAD made Factory believe the work was pushed and skip the push. A push of what
                the remote already has costs a round trip and changes nothing.
            fresh: the clone was just made by `create` (it has no refs yet to compare).
            refs: the mirror's remote refs, when the caller has just read them (`remote_refs`).
            branch_at: a local branch and its commit, set in the same transaction (`create`).

        Returns:
            The clone's remote-tracking refs and tags as they now are (the mirror's).

        Raises:
            UnsafeCloneError: `.git` is not a plain directory, or holds a symlink.
        """
        await asyncio.to_thread(self._check_layout)  # walks a tree the agent can fill: off the event loop
        git_dir = self.git_dir
        (git_dir / "commondir").unlink(missing_ok=True)  # would make the mirror (or anything) its common dir
        # a clone of Factory's is never shallow and has no grafts or commit-graph of its own: one planted
        # would make every push fail ("shallow update not allowed") or change the parents git sees, so what
        # history Factory counts, diffs (the merge base) and sends
        for planted in ("shallow", "info/grafts", "objects/info/commit-graph", "objects/info/commit-graphs"):
            path = git_dir / planted  # a file, or a directory (a split graph's chain; or planted as one)
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        _atomic_write(
            git_dir / "config",
            clone_config(self.url, await object_format(self.mirror), self.author_name, self.author_email),
        )
        (git_dir / "objects" / "info").mkdir(parents=True, exist_ok=True)
        _atomic_write(git_dir / "objects" / "info" / "alternates", f"{self.shared_objects}\n")
        return await self.sync_refs(fresh=fresh, theirs=refs, branch_at=branch_at)

    def _check_layout(self) -> None:
        if self.path.is_symlink() or not self.path.is_dir():
            raise UnsafeCloneError(f"{self.path} is not a directory")
        git_dir = self.git_dir
        if git_dir.is_symlink() or not git_dir.is_dir():
            raise UnsafeCloneError(f"{git_dir} is not a plain directory (was it replaced by a file or a link?)")
        locks = []
        for root, dirs, files in os.walk(git_dir):
            for name in dirs + files:
                if os.path.islink(os.path.join(root, name)):
                    rel = os.path.relpath(os.path.join(root, name), self.path)
                    raise UnsafeCloneError(f"{rel} is a symlink; Factory will not run git in this clone")
            # git keeps only files and directories here; a FIFO the agent planted at HEAD, packed-refs, a
            # ref or info/exclude blocked Factory's git on open() until its timeout, every step and retry
            locks += [os.path.join(root, n) for n in files if n.endswith(".lock") or _special(os.path.join(root, n))]
        # a lock the agent left (index, HEAD, a ref, packed-refs) would fail every Factory command that
        # takes it, and the step would be retried for ever; no other git runs here now (the sandbox
        # ended every process of the run, and a task's steps on its clone run one at a time)
        for lock in locks:  # and the FIFOs, sockets and devices: removed, never opened
            os.unlink(lock)

    async def sync_refs(
        self,
        keep: str | None = None,
        fresh: bool = False,
        theirs: dict[str, str] | None = None,
        branch_at: tuple[str, str] | None = None,
    ) -> dict[str, str]:
        """Set refs/remotes/origin/* (and tags) to the mirror's, which Factory alone writes; return them.

        Args:
            keep: a ref left as it is when the clone has it.
            fresh: the clone was just initialised by Factory and has no refs.
            theirs: the mirror's refs, when the caller has just read them.
            branch_at: a local branch and its commit, set in the same transaction.
        """
        mirrors = remote_refs(self.mirror) if theirs is None else _known(theirs)
        clones = _known({}) if fresh else remote_refs(self.git_dir)
        theirs, ours = await asyncio.gather(mirrors, clones)  # two reads, side by side
        if keep and keep in ours:
            theirs[keep] = ours[keep]
        lines = [f"update {name} {sha}" for name, sha in theirs.items() if ours.get(name) != sha]
        lines += [
            f"delete {name}" for name in ours if name.startswith("refs/remotes/origin/") and name not in theirs
        ]  # fmt: skip
        if branch_at is not None:
            lines.append(f"update {branch_at[0]} {branch_at[1]}")
        if lines:
            await git(
                "update-ref", "-m", "factory: from mirror", "--stdin",
                git_dir=self.git_dir, stdin=("\n".join(lines) + "\n").encode(),
            )  # fmt: skip
        return theirs

    async def commit_all(self, message: str) -> bool:
        """Commit everything left uncommitted (hooks off); True when a commit was made.

        Submodules and nested repositories are left out of the dirty check: git would otherwise run
        `git status` inside them, under config the agent wrote there.
        """
        # the agent's index is never read: rebuilt from HEAD, so no entry it marked assume-unchanged or
        # skip-worktree hides a change, and one crafted huge costs nothing (the work tree is what is committed)
        (self.git_dir / "index").unlink(missing_ok=True)
        try:
            await self.git("read-tree", "HEAD")
        except GitError:
            if await self.has_ref("HEAD"):
                raise
            # an unborn branch: nothing to read, the index stays empty
        # an untracked nested repository is listed as "dir/" (git does not look inside); staging one with
        # no commit fails every time, so an agent could keep finalize failing: left out like gitlinks
        # two listings, not one: a file the agent names like a `--stage` line must not pass for a gitlink.
        # Three reads of the index just built, side by side (nothing writes it meanwhile)
        status, others, staged = await asyncio.gather(
            self.git("status", "--porcelain", "--ignore-submodules=all"),
            self.git("ls-files", "-z", "--others", "--exclude-standard"),
            self.git("ls-files", "--stage", "-z"),
        )
        if not status.strip():
            return False
        nested = [e.rstrip("/") for e in others.split("\0") if e.endswith("/")]
        gitlinks = [e.split("\t", 1)[1] for e in staged.split("\0") if e.startswith("160000 ") and "\t" in e]
        excluded = [f":(exclude,literal){p}" for p in [*gitlinks, *nested]]
        # on stdin, not the command line: the agent chooses how many there are and how long (ARG_MAX)
        spec = "\0".join([".", *excluded]).encode()
        await self.git("add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul", stdin=spec)
        identity = ["-c", f"user.name={self.author_name}", "-c", f"user.email={self.author_email}"]
        try:
            await self.git(*identity, "commit", "--no-verify", "-q", "-m", message)
        except GitError:  # nothing staged (all of it left out above) is not a failure; anything else is
            staged = await self.git("diff", "--cached", "--name-only", "--no-ext-diff", "--ignore-submodules=all")
            if not staged.strip():
                return False
            raise
        return True

    async def count(self, since: str, until: str = "HEAD") -> int:
        return int((await self.git("rev-list", "--count", f"{since}..{until}", "--")).strip() or 0)

    async def has_ref(self, ref: str) -> bool:
        return bool((await self.git("rev-parse", "--verify", "--quiet", ref, check=False)).strip())

    async def numstat(self, base: str) -> str:
        return await self.git("diff", "--numstat", "--no-ext-diff", "--no-textconv", f"{base}...HEAD", "--")

    async def head(self) -> str:
        return (await self.git("rev-parse", "HEAD")).strip()

    async def unpushed(
        self, branch: str, base_branch: str, ahead_of_base: int | None = None, refs: dict[str, str] | None = None
    ) -> int:
        """Commits on HEAD the remote's `branch` lacks (counted from the base if it has none; `ahead_of_base`:
        that count, when the caller has just made it; `refs`: the clone's remote refs, from `secure`)."""
        remote = f"refs/remotes/origin/{branch}"
        if remote in refs if refs is not None else await self.has_ref(remote):
            return await self.count(remote)
        return ahead_of_base if ahead_of_base is not None else await self.count(f"refs/remotes/origin/{base_branch}")

    async def push(self, branch: str, env: Mapping[str, str]) -> None:
        """Push HEAD to `branch` on the real remote (the URL from Factory's config, not the clone's)."""
        await self.git(
            "push", "--no-verify", "--no-recurse-submodules", "--end-of-options", self.url, f"HEAD:refs/heads/{branch}",
            env=env, timeout=600,
        )  # fmt: skip
        # no remote-tracking ref is set: every reader of the clone runs `secure` first, which sets them all
        # to the mirror's (Factory's record of the remote), so one written here would be undone unread

    def _remove_checkout(self) -> None:
        if self.path.is_symlink():
            self.path.unlink()
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def remove(self) -> None:
        """Delete the checkout (and a half-built one); the mirror keeps no record of it."""
        self._remove_checkout()
        shutil.rmtree(self.path.with_name(f".{self.path.name}.new"), ignore_errors=True)
