"""Factory's own copy of what an environment needs from a worktree, made once, before anything runs.

The agent is still running while the broker serves it, and its worktree is its to change
at any moment. So the broker reads the compose file once and copies every file and
directory the file names (env files, build contexts, Dockerfiles, bind sources, secrets
and configs files) into a directory of Factory's (`<workspace_root>/envs/<project>-<n>/`,
outside every sandbox); docker and compose only ever read that copy.

What this trusts: nothing in the worktree. Each source is opened without following a
link (O_NOFOLLOW, directories walked by file descriptor with `os.fwalk`), and where it
really is is read back from /proc/self/fd, so a path swapped for a link while we copy is
caught. Only regular files and directories are copied; a device, fifo or socket, a link
that leads out of the worktree, a `.git` and a copy over the size cap are refused, each
with its path.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


class CopyRefused(Exception):
    """Something the compose file names cannot be copied; the message names its path."""


def _real_fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@dataclass
class _Budget:
    left: int

    def take(self, n: int, where: str) -> None:
        self.left -= n
        if self.left < 0:
            raise CopyRefused(f"{where}: the files an environment names exceed the copy cap (previews.max_copy_mb)")


def read_bounded(path: str, worktree: str, limit: int) -> bytes:
    """The bytes of one regular file inside the worktree, read once (a link, a fifo or too big: refused)."""
    fd = _open_regular(path, worktree)
    try:
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            raise CopyRefused(f"{_rel(path, worktree)} is larger than {limit} bytes")
        return data
    finally:
        os.close(fd)


def _rel(path: str, worktree: str) -> str:
    return os.path.relpath(path, worktree) if _inside(path, worktree) else path


def _open_regular(path: str, worktree: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CopyRefused(f"cannot open {_rel(path, worktree)} without following a link: {exc.strerror}") from exc
    st = os.fstat(fd)
    real = _real_fd_path(fd)
    if not stat.S_ISREG(st.st_mode) or not _inside(real, worktree) or "/.git/" in real + "/":
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else "not inside the worktree (or in .git)"
        raise CopyRefused(f"{_rel(path, worktree)} is {what}")
    return fd


def _copy_fd(fd: int, dest: Path, mode: int, budget: _Budget, where: str) -> None:
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        while chunk := os.read(fd, _CHUNK):
            budget.take(len(chunk), where)
            os.write(out, chunk)
    finally:
        os.close(out)
    # readable by containers' users, writable by no one but Factory; no setuid bits carried over
    os.chmod(dest, 0o755 if mode & 0o111 else 0o644)


def _link(src_dir_fd: int, name: str, dest: Path, src_path: str, worktree: str, copy_root: Path) -> None:
    """Recreate a link whose target is inside the worktree as a link into the copy; refuse one out."""
    target = os.readlink(name, dir_fd=src_dir_fd)
    resolved = os.path.realpath(os.path.join(os.path.dirname(src_path), target))
    if not _inside(resolved, worktree) or resolved == worktree or "/.git" in resolved[len(worktree) :] + "/":
        raise CopyRefused(f"{_rel(src_path, worktree)} is a link to {target}, outside the worktree")
    dest.symlink_to(os.path.relpath(copy_root / os.path.relpath(resolved, worktree), dest.parent))


class Copier:
    """Copies paths of one worktree into `dest` (same relative layout), under one size cap."""

    def __init__(self, worktree: str, dest: str, max_bytes: int):
        self.worktree = os.path.realpath(worktree)
        self.dest = Path(dest)
        self.budget = _Budget(max_bytes)
        self.done: set[str] = set()

    def copy_path(self, path: str) -> str:
        """Copy `path` (a real path inside the worktree); its place in the copy."""
        path = os.path.realpath(path)
        rel = os.path.relpath(path, self.worktree)
        if not _inside(path, self.worktree) or rel.split(os.sep)[0] == ".." or ".git" in rel.split(os.sep):
            raise CopyRefused(f"{path} is outside the worktree (or in .git)")
        out = self.dest / rel if rel != "." else self.dest
        if any(_inside(path, d) for d in self.done):
            return str(out)
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            self._copy_tree(path, out)
        else:
            out.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            fd = _open_regular(path, self.worktree)
            try:
                if not out.exists():
                    _copy_fd(fd, out, os.fstat(fd).st_mode, self.budget, rel)
            finally:
                os.close(fd)
        self.done.add(path)
        return str(out)

    def _copy_tree(self, top: str, out: Path) -> None:
        first = True
        for dirpath, dirnames, filenames, dfd in os.fwalk(top, follow_symlinks=False):
            real = _real_fd_path(dfd)
            if first and real != top or not _inside(real, self.worktree):
                raise CopyRefused(f"{_rel(dirpath, self.worktree)} moved while Factory copied it")
            first = False
            dirnames[:] = [d for d in dirnames if d != ".git"]
            here = out / os.path.relpath(dirpath, top)
            here.mkdir(parents=True, exist_ok=True, mode=0o755)
            for name in list(dirnames) + filenames:
                src = os.path.join(real, name)
                try:
                    self._entry(dfd, name, src, here, dirnames)
                except OSError as exc:  # an entry that vanished or changed between the listing and the copy
                    raise CopyRefused(f"{_rel(src, self.worktree)} changed while Factory copied it: {exc}") from exc

    def _entry(self, dfd: int, name: str, src: str, here: Path, dirnames: list[str]) -> None:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            if name in dirnames:
                dirnames.remove(name)
            _link(dfd, name, here / name, src, self.worktree, self.dest)
        elif stat.S_ISDIR(st.st_mode):
            return  # fwalk descends into it (without following links)
        elif not stat.S_ISREG(st.st_mode):
            raise CopyRefused(f"{_rel(src, self.worktree)} is not a regular file (a device, fifo or socket)")
        else:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
            except OSError as exc:
                raise CopyRefused(f"cannot open {_rel(src, self.worktree)}: {exc.strerror}") from exc
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise CopyRefused(f"{_rel(src, self.worktree)} is not a regular file")
                _copy_fd(fd, here / name, st.st_mode, self.budget, _rel(src, self.worktree))
            finally:
                os.close(fd)
