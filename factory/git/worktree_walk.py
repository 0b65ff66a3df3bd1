"""Reading an agent's worktree from Factory's side: every file once, no link followed, nothing run.

The worktree is the agent's: it, or whoever wrote text it read, controls every file and folder in it,
`.git` included, and may change them while Factory reads. So (the pattern of
`factory/environments/copy.py`):
- the top folder is Factory's path (`task_worktree`, from the task id in Factory's database), opened
  with `O_NOFOLLOW`; every folder and file below is opened relative to its parent's descriptor with
  `O_NOFOLLOW`, so no link is followed, even one swapped in after the listing;
- a link is recorded as git records one, by its own text (`readlink`), never by what it names;
- only regular files with a single link are read, opened `O_NONBLOCK` and checked with `fstat` after
  the open (a FIFO, socket or device is listed and never opened; a hard link could name a file the
  agent cannot read itself); `.git`, anywhere, is never opened;
- files, bytes, folder depth and time are capped, and what was left out is said (`Walk.skipped`,
  `Walk.cut`); the walk is blocking and runs in a thread, off the event loop.
Ignore files are not read (they are the agent's too): well-known dependency and cache folders
(`BULKY`) that the base does not track are skipped instead.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

MAX_ENTRIES = 10_000
"""Files, links and folders looked at; past it the walk stops and says so."""
MAX_SHOWN_BYTES = 1 << 20
"""A changed file larger than this is listed without its lines."""
MAX_COMPARED_BYTES = 32 << 20
"""A file larger than this is not read at all (listed in `skipped`)."""
MAX_TOTAL_BYTES = 256 << 20
"""Bytes read from the worktree per diff."""
MAX_SECONDS = 10.0
"""Time the walk may take before it stops and says so."""
MAX_DEPTH = 64
MAX_KEPT_FILES = 300
"""Changed files whose bytes are kept for their lines; past it they are listed with no lines."""

BULKY = frozenset(
    {"node_modules", ".venv", "venv", "__pycache__", ".tox", ".nox", ".mypy_cache", ".pytest_cache",
     ".ruff_cache", ".gradle", ".next", ".cache", "target", ".eggs"}
)  # fmt: skip
"""Folders skipped when the base tracks nothing under them (dependencies and caches, not the work)."""

GITLINK = "160000"
LINK = "120000"


def task_worktree(root: Path, task_id: int) -> Path:
    """The checkout Factory makes for task `task_id` (`workspace_root/worktrees/task-N`)."""
    return root / "worktrees" / f"task-{int(task_id)}"


def show_path(path: str) -> str:
    """A path as text that cannot break a line of the patch: backslash, control and format characters escaped."""
    out = []
    for ch in path:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


@dataclass
class BaseEntry:
    mode: str
    oid: str
    size: int | None


@dataclass
class Seen:
    mode: str
    oid: str | None  # None: not read (too large)
    size: int
    data: bytes | None  # kept only when changed and small enough to show


@dataclass
class Walk:
    root_fd: int
    base: dict[str, BaseEntry]
    deadline: float
    seen: dict[str, Seen] = field(default_factory=dict)
    visited: set[str] = field(default_factory=set)  # folders opened ("" is the top)
    listed: set[str] = field(default_factory=set)  # folders whose every entry was looked at
    skipped: list[str] = field(default_factory=list)
    entries: int = 0
    bytes_read: int = 0
    kept: int = 0
    cut: str = ""  # why the walk stopped early

    def skip(self, path: str, why: str) -> None:
        self.skipped.append(f"{show_path(path)}: {why}")


def _oid(data: bytes, size: int) -> str:
    h = hashlib.sha1(b"blob %d\0" % size)  # noqa: S324 (git's object name, not a secret)
    h.update(data)
    return h.hexdigest()


def _under_tracked(base: dict[str, BaseEntry], prefix: str) -> bool:
    return any(p.startswith(prefix) for p in base)


def _read_file(w: Walk, dfd: int, name: str, path: str) -> None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as exc:
        w.skip(path, f"not read ({exc.strerror})")
        return
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped since the listing
            w.skip(path, "not a regular file")
            return
        if st.st_nlink > 1:
            w.skip(path, "a hard link: not read")
            return
        mode = "100755" if st.st_mode & 0o100 else "100644"
        if st.st_size > MAX_COMPARED_BYTES or w.bytes_read + st.st_size > MAX_TOTAL_BYTES:
            w.seen[path] = Seen(mode, None, st.st_size, None)
            w.skip(path, f"{st.st_size} bytes: too large to compare")
            return
        chunks, size = [], 0
        while size <= st.st_size and (chunk := os.read(fd, min(1 << 20, st.st_size + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)[: st.st_size] if size > st.st_size else b"".join(chunks)
        w.bytes_read += len(data)
    finally:
        os.close(fd)
    oid = _oid(data, len(data))
    before = w.base.get(path)
    changed = before is None or before.oid != oid or before.mode != mode
    keep = changed and len(data) <= MAX_SHOWN_BYTES and w.kept < MAX_KEPT_FILES
    w.kept += keep
    w.seen[path] = Seen(mode, oid, len(data), data if keep else None)


def _walk_dir(w: Walk, dfd: int, rel: str, depth: int) -> None:
    w.visited.add(rel)
    try:
        with os.scandir(dfd) as it:
            names = []
            for entry in it:
                names.append(entry.name)
                if len(names) > MAX_ENTRIES:
                    break
    except OSError as exc:
        w.skip(rel or ".", f"not listed ({exc.strerror})")
        return
    if len(names) > MAX_ENTRIES:
        w.cut = w.cut or f"more than {MAX_ENTRIES} entries in {show_path(rel) or 'the top folder'}"
        return
    for name in sorted(names):
        if w.cut:
            return
        if w.entries >= MAX_ENTRIES:
            w.cut = f"more than {MAX_ENTRIES} files and folders"
            return
        if time.monotonic() > w.deadline:
            w.cut = f"the walk took longer than {MAX_SECONDS:.0f} s"
            return
        w.entries += 1
        shown = os.fsencode(name).decode("utf-8", "replace")
        path = rel + shown
        if name == ".git":  # the agent's repository (or a file naming another): never read
            continue
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except OSError:
            continue  # gone since the listing
        if stat.S_ISDIR(st.st_mode):
            before = w.base.get(path)
            if before is not None and before.mode == GITLINK:
                continue  # a submodule: its commit is not in this worktree's files
            if name in BULKY and not _under_tracked(w.base, path + "/"):
                w.skip(path + "/", "a dependency or cache folder the base does not track")
                continue
            if depth >= MAX_DEPTH:
                w.skip(path + "/", f"deeper than {MAX_DEPTH} folders")
                continue
            try:
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except OSError as exc:
                w.skip(path + "/", f"not opened ({exc.strerror})")
                continue
            try:
                _walk_dir(w, sub, path + "/", depth + 1)
            finally:
                os.close(sub)
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = os.fsencode(os.readlink(name, dir_fd=dfd))  # the link's own text, not what it names
            except OSError:
                continue
            w.seen[path] = Seen(LINK, _oid(target, len(target)), len(target), target)
        elif stat.S_ISREG(st.st_mode):
            _read_file(w, dfd, name, path)
        else:
            w.skip(path, "not a regular file (a FIFO, socket or device): not opened")
    if not w.cut:
        w.listed.add(rel)


def walk_worktree(worktree: Path, base: dict[str, BaseEntry]) -> Walk:
    """Look at every file of `worktree` once, without following a link (blocking: run it in a thread).

    Raises:
        FileNotFoundError: there is no worktree at that path on this host (or it is not a plain folder).
    """
    try:
        top = os.open(worktree, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise FileNotFoundError(f"no worktree at {worktree} on this host") from exc
    w = Walk(root_fd=top, base=base, deadline=time.monotonic() + MAX_SECONDS)
    try:
        _walk_dir(w, top, "", 0)
    finally:
        os.close(top)
    return w
