"""Small async wrappers around the git CLI, run so that nothing an agent wrote can execute.

Every git command Factory runs goes through `git()`, which

- puts `SAFE_CONFIG` on its command line: hooks are looked up under `/dev/null` (a path nobody
  can create files under, so there is never a hook to run), `core.fsmonitor` is off, commit
  signing (`gpg.program`) and submodule recursion are off. Command-line config outranks every
  config file, and git hands it on to the git processes it starts (in submodules too);
- runs with a minimal environment (`safe_env`): PATH, LANG, TZ, a HOME that is an empty
  directory of Factory's, no system or global config (so nothing in `~/.gitconfig` or
  `/etc/gitconfig`, e.g. `init.defaultBranch` or a credential helper, changes what Factory's git
  does), no prompts, no replace refs. Network commands add what `factory.git.repos.git_env`
  gives (the token header, the SSH agent, proxies).

Repository-local config is the other half: see `factory.git.clones`, which rewrites a task's
`.git/config` from Factory's own template before Factory runs git in it, and docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import functools
import os
import re
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from factory.domain.redact import scrub

# `-c` options for every Factory git command. `/dev/null` as the hooks directory: `/dev/null/<hook>`
# can never exist, whereas an empty directory could be filled by anyone who can write there.
SAFE_CONFIG: tuple[str, ...] = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "credential.helper=",
    "protocol.ext.allow=never",
    "submodule.recurse=false",
    "push.recurseSubmodules=no",
    "fetch.recurseSubmodules=no",
    "core.pager=cat",
)

# Variables carried over from the worker's environment; nothing else is.
_PASS_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ")


class GitError(RuntimeError):
    pass


@functools.cache
def _empty_home() -> str:
    """An empty, read-only directory used as HOME, so git finds no per-user file in it."""
    home = tempfile.mkdtemp(prefix="factory-git-home-")
    os.chmod(home, 0o500)
    atexit.register(os.rmdir, home)
    return home


def safe_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a Factory git command: an allow-list, plus `extra`.

    Args:
        extra: variables to add on top (e.g. the token header from `git_env`).

    Returns:
        A fresh environment dict; the worker's own environment is never passed whole.
    """
    env = {k: os.environ[k] for k in _PASS_THROUGH if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        HOME=_empty_home(),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="/bin/false",
        GIT_SSH_COMMAND="ssh -o BatchMode=yes",  # outranks any core.sshCommand in a config file
        GIT_NO_REPLACE_OBJECTS="1",
        GIT_PAGER="cat",
    )
    if extra:
        env.update(extra)
    return env


def safe_args() -> list[str]:
    """`-c key=value` pairs of `SAFE_CONFIG`, to put right after `git`."""
    return [a for kv in SAFE_CONFIG for a in ("-c", kv)]


async def git(
    *args: str,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
    stdin: bytes | None = None,
) -> str:
    """Run git with Factory's safe config and minimal environment; return stdout.

    Args:
        *args: git's arguments (global options such as `-c` or `--git-dir` first).
        cwd: the working directory.
        env: variables added to the minimal environment (see `safe_env`); never a whole environ.
        timeout: seconds before git is killed.
        check: raise `GitError` (with scrubbed stderr) when git fails.
        stdin: bytes for git's standard input (none by default).

    Returns:
        git's standard output.
    """
    proc = await asyncio.create_subprocess_exec(
        "git",
        *safe_args(),
        *args,
        cwd=cwd,
        env=safe_env(env),
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except (TimeoutError, asyncio.CancelledError):
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
        raise
    if check and proc.returncode != 0:
        msg = scrub(err.decode(errors="replace").strip() or out.decode(errors="replace").strip())
        verb = next((a for a in args if not a.startswith("-") and "=" not in a and "/" not in a), args[0])
        raise GitError(f"git {verb} failed: {msg}")
    return out.decode(errors="replace")


def slugify(text: str, max_len: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (slug[:max_len].rstrip("-")) or "task"


@asynccontextmanager
async def file_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive flock, held across processes on this host (per-repo fetch serialisation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
