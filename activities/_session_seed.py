"""A follow-up round resumes the finished round's Claude Code session: its transcript, copied across homes.

The CLI keeps a session at `<home>/.claude/projects/<cwd as a folder name>/<session id>.jsonl`, and
each task has its own home and its own worktree, so `claude --resume <id>` in a new round finds
nothing unless that one file is copied into the new round's home, under the folder named for the
new round's worktree (`project_dir_name`).

What this trusts: only Factory's own record names the files — the homes dir (workspace_root), the
two task ids, the worktree paths Factory gives tasks (`worktrees/task-N`) and a session id that
must be a UUID (it was read from the CLI's stdout, which the agent can write). Everything under a
home is the agent's to write, so every directory on the way is opened with O_NOFOLLOW below the
homes dir (a planted link is refused, not followed), the transcript must be a regular file opened
with O_NOFOLLOW | O_NONBLOCK (a FIFO does not block the worker) and at most `SESSION_CAP` bytes, and
nothing else of the earlier home is read: not its settings, other sessions, memory or credentials.
The copy is written to a new file (O_EXCL | O_NOFOLLOW) and renamed into place, in directories
opened the same way, so a link the new round's agent left is replaced, never written through.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from pathlib import Path

SESSION_CAP = 50 * 1024 * 1024  # a transcript larger than this is not carried over
_CHUNK = 1024 * 1024
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NAME_MAX = 200  # the CLI's longest folder name before it adds a hash (read from the CLI 2.1.x)


def project_dir_name(cwd: str) -> str:
    """The folder the CLI keeps a cwd's sessions in, computed as the CLI 2.1.x does.

    Every UTF-16 code unit that is not an ASCII letter or digit becomes `-`; a name longer than
    200 characters is cut there and ends with `-` and the base-36 of the path's 32-bit string hash.
    """
    raw = cwd.encode("utf-16-le", "surrogatepass")
    units = [int.from_bytes(raw[i : i + 2], "little") for i in range(0, len(raw), 2)]
    name = "".join(chr(u) if chr(u).isascii() and chr(u).isalnum() else "-" for u in units)
    if len(name) <= _NAME_MAX:
        return name
    h = 0
    for u in units:
        h = (h * 31 + u) & 0xFFFFFFFF
    h = abs(h - (1 << 32) if h & 0x80000000 else h)
    digits = ""
    while True:
        h, r = divmod(h, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
        if not h:
            break
    return f"{name[:_NAME_MAX]}-{digits}"


def _open_dirs(top: Path, parts: list[str], create: bool) -> int:
    """A descriptor of `top/parts...`, each step opened without following a link (`top` is Factory's)."""
    fd = os.open(top, _DIR)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
            nxt = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _session_dir(task_id: int, cwd: str) -> list[str]:
    return [f"task-{task_id}", ".claude", "projects", project_dir_name(cwd)]


def seed_transcript(homes: Path, parent_id: int, task_id: int, session_id: str, cwd: str) -> str | None:
    """Copy the parent task's transcript of `session_id` into task `task_id`'s home for `cwd`.

    Returns None when the new home holds the session (copied now or earlier), else why it does not.
    """
    if not _UUID.fullmatch(session_id):
        return "its session id is not a UUID"
    name = f"{session_id}.jsonl"
    parent_cwd = str(homes.parent / "worktrees" / f"task-{parent_id}")
    try:
        dst_dir = _open_dirs(homes, _session_dir(task_id, cwd), create=True)
    except OSError as exc:
        return f"this round's home cannot take it ({exc.strerror or exc})"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.stat(name, dir_fd=dst_dir, follow_symlinks=False)
            return None  # already here (an earlier attempt of this round copied it)
        try:
            src_dir = _open_dirs(homes, _session_dir(parent_id, parent_cwd), create=False)
        except FileNotFoundError:
            return f"task #{parent_id}'s session is not on this host"
        except OSError as exc:
            return f"task #{parent_id}'s session folder cannot be opened safely ({exc.strerror or exc})"
        try:
            return _copy(src_dir, dst_dir, name)
        finally:
            os.close(src_dir)
    finally:
        os.close(dst_dir)


def _copy(src_dir: int, dst_dir: int, name: str) -> str | None:
    try:
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src_dir)
    except FileNotFoundError:
        return "its transcript is not on this host"
    except OSError as exc:  # ELOOP: a link planted where the transcript was
        return f"its transcript cannot be opened safely ({exc.strerror or exc})"
    tmp = f".{name}.{secrets.token_hex(4)}.seed"
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            return "its transcript is not a regular file"
        if st.st_size > SESSION_CAP:
            return f"its transcript is over {SESSION_CAP // (1024 * 1024)} MB"
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst_dir)
        try:
            copied = 0
            while chunk := os.read(src, _CHUNK):
                copied += len(chunk)
                if copied > SESSION_CAP:  # it grew while being read
                    raise OSError(f"the transcript grew past {SESSION_CAP // (1024 * 1024)} MB")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dst, view) :]
        finally:
            os.close(dst)
        os.rename(tmp, name, src_dir_fd=dst_dir, dst_dir_fd=dst_dir)
        return None
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dst_dir)
        return f"its transcript could not be copied ({exc.strerror or exc})"
    finally:
        os.close(src)
