"""A running task's diff, live: the files in its worktree against its base, without running git there.

While an agent works (and while it waits for an answer) its edits are not pushed, so the mirror has
nothing to diff. This module reads the worktree's files itself and diffs them in Python against the
task's base commit, read from Factory's own bare mirror. The result has the `BranchDiff` shape the
dashboard already shows, marked `live`.

What this trusts, and what it does not:
- The worktree's path is Factory's (`task_worktree`: `workspace_root/worktrees/task-N` for the task id
  in Factory's database), never a path the agent wrote. The base commit comes from Factory's records
  (the task row's `base_sha`, its base branch and its pushed branch in the mirror).
- Nothing under the worktree is trusted: the agent, or whoever wrote text it read, controls every file,
  `.git` included. So git never runs against the worktree or its `.git` (no filter, `diff.external`,
  textconv, `core.fsmonitor`, hook, `.gitattributes` driver, `commondir` or alternates of the agent's
  can run or redirect anything); `.git` is never opened. Git runs only on the mirror, through Factory's
  hardened `git()`, and only plumbing (`rev-parse`, `merge-base`, `ls-tree`, `cat-file blob`): no diff
  machinery, so no driver or textconv applies even there.
- The worktree is read by `factory.git.worktree_walk` (no link followed, regular files only, capped,
  in a thread); paths are shown with control characters escaped, so a name cannot forge a line of the
  patch. Ignore files are not read; what was left out is named in `skipped`.
"""

from __future__ import annotations

import asyncio
import difflib
from datetime import UTC, datetime
from pathlib import Path

from factory.git.commands import GitError, git
from factory.git.diff import MAX_PATCH_CHARS, BranchDiff, FileChange
from factory.git.worktree_walk import (
    GITLINK,
    MAX_KEPT_FILES,
    MAX_SHOWN_BYTES,
    BaseEntry,
    Seen,
    Walk,
    show_path,
    walk_worktree,
)

MAX_PATCHED_FILES = MAX_KEPT_FILES
"""Changed files whose lines are shown; past it they are listed with no lines."""
MAX_SKIPPED_LISTED = 50
_BINARY_PROBE = 8000  # git's rule: a NUL in the first 8000 bytes makes a file binary


def _deleted(w: Walk, path: str) -> bool:
    """A base file the walk did not see is gone only if the deepest folder of it that was opened was listed whole."""
    parts = path.split("/")[:-1]
    for i in range(len(parts), -1, -1):
        folder = "".join(p + "/" for p in parts[:i])
        if folder in w.visited:
            return folder in w.listed
    return False


def _lines(data: bytes) -> list[str]:
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
        return [x + "\n" for x in lines]
    return [x + "\n" for x in lines[:-1]] + [lines[-1]]  # the last one has no newline


def _range(start: int, n: int) -> str:
    if n == 1:
        return str(start + 1)
    return f"{start + 1 if n else start},{n}"


def _hunks(a: list[str], b: list[str]) -> tuple[list[str], int, int]:
    out: list[str] = []
    adds = dels = 0

    def emit(sign: str, line: str) -> None:
        out.append(sign + line.rstrip("\n"))
        if not line.endswith("\n"):
            out.append("\\ No newline at end of file")

    for group in difflib.SequenceMatcher(None, a, b).get_grouped_opcodes(3):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        out.append(f"@@ -{_range(i1, i2 - i1)} +{_range(j1, j2 - j1)} @@")
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                for line in a[a1:a2]:
                    emit(" ", line)
                continue
            for line in a[a1:a2]:
                emit("-", line)
                dels += 1
            for line in b[b1:b2]:
                emit("+", line)
                adds += 1
    return out, adds, dels


def _binary(data: bytes) -> bool:
    return b"\0" in data[:_BINARY_PROBE]


async def _base_tree(mirror: Path, commit: str) -> dict[str, BaseEntry]:
    out = await git("ls-tree", "-r", "-l", "-z", "--full-tree", "--end-of-options", commit, git_dir=mirror)
    base: dict[str, BaseEntry] = {}
    for rec in out.split("\0"):
        meta, sep, path = rec.partition("\t")
        if not sep:
            continue
        mode, _kind, oid, size = meta.split()
        base[path] = BaseEntry(mode, oid, int(size) if size.isdigit() else None)
    return base


async def _blob(mirror: Path, b: BaseEntry) -> bytes | None:
    if b.size is None or b.size > MAX_SHOWN_BYTES:
        return None
    text = await git("cat-file", "blob", b.oid, git_dir=mirror, max_output=b.size + 1)
    return text.encode()  # git() decodes with replacement: shown as text, a NUL still marks binary


def _header(path: str, old: BaseEntry | None, new: Seen | None) -> list[str]:
    p = show_path(path)
    head = [f"diff --git a/{p} b/{p}"]
    if old is None and new is not None:
        head.append(f"new file mode {new.mode}")
    elif new is None and old is not None:
        head.append(f"deleted file mode {old.mode}")
    elif old and new and old.mode != new.mode:
        head += [f"old mode {old.mode}", f"new mode {new.mode}"]
    return head


async def worktree_diff(mirror: Path, base_commit: str, worktree: Path, branch: str, base: str) -> BranchDiff:
    """Diff the files in `worktree` against `base_commit` of Factory's bare `mirror`.

    Args:
        mirror: the repo's bare mirror (Factory's; git runs only here).
        base_commit: the commit the task's work started from (Factory's record).
        worktree: the task's checkout, from Factory's record (`task_worktree`); read, never given to git.
        branch: the task's branch, for the response.
        base: the base branch's name, for the response.

    Raises:
        FileNotFoundError: there is no worktree at that path on this host.
        GitError: the base commit is not in the mirror.
    """
    tree = await _base_tree(mirror, base_commit)
    walk = await asyncio.to_thread(walk_worktree, worktree, tree)
    changed = sorted(
        [p for p, s in walk.seen.items() if (b := tree.get(p)) is None or b.oid != s.oid or b.mode != s.mode]
        + [p for p, b in tree.items() if p not in walk.seen and b.mode != GITLINK and _deleted(walk, p)]
    )
    files: list[FileChange] = []
    patch: list[str] = []
    fetched = 0
    for path in changed:
        old, new = tree.get(path), walk.seen.get(path)
        shown = show_path(path)
        patch += _header(path, old, new)
        old_data = None
        if old is not None and old.mode != GITLINK and fetched < MAX_PATCHED_FILES:
            old_data = await _blob(mirror, old)
            fetched += 1
        new_data = new.data if new is not None else b""
        if old is None:
            old_data = b""
        if new is not None and new.data is None and new.oid is None:
            files.append(FileChange(shown, None, None))  # not read: listed in skipped already
            continue
        if old_data is None or new_data is None:
            files.append(FileChange(shown, None, None))
            walk.skipped.append(f"{shown}: lines not shown (over {MAX_SHOWN_BYTES} bytes or {MAX_PATCHED_FILES} files)")
            continue
        if _binary(old_data) or _binary(new_data):
            patch.append(
                f"Binary files {'a/' + shown if old else '/dev/null'} and {'b/' + shown if new else '/dev/null'} differ"
            )
            files.append(FileChange(shown, None, None))
            continue
        a, b = _lines(old_data), _lines(new_data)
        body, adds, dels = _hunks(a, b)
        if body:
            patch += [
                f"--- {'a/' + shown if old else '/dev/null'}",
                f"+++ {'b/' + shown if new else '/dev/null'}",
                *body,
            ]
        files.append(FileChange(shown, adds, dels))
    text = "\n".join(patch) + ("\n" if patch else "")
    out = BranchDiff(branch=branch, base=base, files=files, live=True)
    out.additions = sum(f.additions or 0 for f in files)
    out.deletions = sum(f.deletions or 0 for f in files)
    out.truncated = len(text) > MAX_PATCH_CHARS or bool(walk.cut)
    out.patch = text[:MAX_PATCH_CHARS]
    out.as_of = datetime.now(UTC).isoformat(timespec="seconds")
    out.skipped_count = len(walk.skipped)
    out.skipped = walk.skipped[:MAX_SKIPPED_LISTED]
    out.note = f"Only part of the worktree was compared: {walk.cut}." if walk.cut else ""
    return out


async def live_base(mirror: Path, base_sha: str | None, base: str, branch: str) -> str:
    """The commit a running task's work is diffed against, from Factory's records and its mirror only.

    The task row's `base_sha` (the mirror's base tip when the worktree was made) or else the base
    branch's tip; when the branch was pushed before (a retry, a follow-up round), where it left that.

    Raises:
        GitError: neither is in the mirror.
    """
    start = base_sha or f"refs/remotes/origin/{base}"
    found = (await git("rev-parse", "--verify", "--quiet", f"{start}^{{commit}}", git_dir=mirror, check=False)).strip()
    if not found:
        raise GitError(f"the base {base!r} is not in Factory's mirror")
    pushed = f"refs/remotes/origin/{branch}"
    if (await git("rev-parse", "--verify", "--quiet", f"{pushed}^{{commit}}", git_dir=mirror, check=False)).strip():
        fork = (await git("merge-base", "--end-of-options", found, pushed, git_dir=mirror, check=False)).strip()
        return fork or found
    return found
