"""Small async wrappers around the git CLI, run so that nothing an agent wrote can execute.

Every git command Factory runs goes through `git()`, which

- puts `SAFE_CONFIG` on its command line: hooks are looked up under `/dev/null` (a path nobody
  can create files under, so there is never a hook to run), `core.fsmonitor` is off, commit
  signing (`gpg.program`) and submodule recursion are off. Command-line config outranks every
  config file, and git hands it on to the git processes it starts (in submodules too);
- names the repository: `git_dir` (and `work_tree`) is a required argument, passed as `--git-dir`
  and `--work-tree`, so git never discovers a repository from its working directory (a `.git` an
  agent planted in the mirror or above a checkout is never looked at). Commands that need no
  repository (`clone`, `init`, `ls-remote`, `config --file`) pass `git_dir=None` and run in an
  empty directory with discovery stopped there;
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
from factory.processes import absolute_path, drain, kill_and_collect, read_to_end, which

# `-c` options for every Factory git command. `/dev/null` as the hooks directory: `/dev/null/<hook>`
# can never exist, whereas an empty directory could be filled by anyone who can write there.
SAFE_CONFIG: tuple[str, ...] = (
    "core.hooksPath=/dev/null",
    "safe.directory=*",  # the checkout belongs to the sandbox uid when Factory runs as root
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
    # a bare repository is used only when named with --git-dir: discovery never picks up one an agent
    # planted (e.g. a `.git` directory inside the mirror, whose config would run in Factory's fetch)
    "safe.bareRepository=explicit",
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
    # absolute entries only: git starts in the checkout, and an empty or relative entry (`:/usr/bin`, `.`) would
    # find a `git` or `ssh` the agent left there, which would run as the worker with the push's token header
    env["PATH"] = absolute_path(env.get("PATH"))
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


def no_repo_cwd() -> tuple[str, dict[str, str]]:
    """Where a command that needs no repository runs, and the variables that keep git from finding one.

    The empty, read-only home holds no `.git`, and `GIT_CEILING_DIRECTORIES` stops discovery there,
    so the worker's own working directory (maybe inside a repository) is never consulted.
    """
    home = _empty_home()
    return home, {"GIT_CEILING_DIRECTORIES": os.path.dirname(home)}


async def git(
    *args: str,
    git_dir: str | os.PathLike[str] | None,
    work_tree: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
    stdin: bytes | None = None,
    max_output: int | None = None,
) -> str:
    """Run git with Factory's safe config and minimal environment on the repository it names; return stdout.

    Args:
        *args: git's arguments (global options such as `-c` first).
        git_dir: the repository (`--git-dir`), required so git never discovers one; None only for
            commands that need no repository (they run in an empty directory, see `no_repo_cwd`).
        work_tree: the checkout (`--work-tree`), where there is one.
        cwd: the working directory (default: the work tree, else the git dir); pathspecs are relative to it.
        env: variables added to the minimal environment (see `safe_env`); never a whole environ.
        timeout: seconds before git is killed.
        check: raise `GitError` (with scrubbed stderr) when git fails.
        stdin: bytes for git's standard input (none by default).
        max_output: read at most this many bytes of stdout, then stop git (not an error): for output
            whose size an agent chooses (the diff of a 1 GiB file it committed).

    Returns:
        git's standard output.
    """
    named: list[str] = []
    extra = dict(env or {})
    if git_dir is None:
        if work_tree is not None:
            raise ValueError("a work tree needs its git dir")
        home, stop = no_repo_cwd()
        cwd = cwd or home
        extra.update(stop)
    else:
        named = ["--git-dir", str(git_dir)]
        if work_tree is not None:
            named += ["--work-tree", str(work_tree)]
        cwd = cwd or work_tree or git_dir
    verb = next((a for a in args if not a.startswith("-") and "=" not in a and "/" not in a), args[0])
    try:
        proc = await asyncio.create_subprocess_exec(
            *(_dies_with_us() if verb in _REMOTE_VERBS else ()),
            which("git") or "git",
            *safe_args(),
            *named,
            *args,
            cwd=cwd,
            env=safe_env(extra),
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:  # E2BIG, ENOMEM, a missing git: a GitError, which every caller handles
        raise GitError(f"git {verb} could not start: {exc.strerror or exc}") from exc
    try:
        if max_output is None:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        else:
            out, err = await asyncio.wait_for(_capped(proc, max_output), timeout)
            if len(out) >= max_output:
                return out.decode(errors="replace")  # cut short on purpose: git was stopped
    except (TimeoutError, asyncio.CancelledError):
        await kill_and_collect(proc)
        raise
    if check and proc.returncode != 0:
        msg = scrub(err.decode(errors="replace").strip() or out.decode(errors="replace").strip())
        raise GitError(f"git {verb} failed: {msg}")
    return out.decode(errors="replace")


_REMOTE_VERBS = {"push", "fetch", "clone", "ls-remote", "pull"}  # a remote may hold these for minutes


@functools.cache
def _dies_with_us() -> tuple[str, ...]:
    """`setpriv --pdeathsig KILL`, where util-linux has it: a command talking to a remote dies with the worker
    that ran it (a push the remote held went on after a crash and wrote refs into a checkout the retry had
    removed). A prefix, not a preexec_fn, so the spawn stays a vfork of the big worker process; only for the
    remote verbs, as it costs an exec (~15 ms per task when every command had it)."""
    found = which("setpriv")
    return (found, "--pdeathsig", "KILL", "--") if found else ()


async def _capped(proc: asyncio.subprocess.Process, cap: int) -> tuple[bytes, bytes]:
    """stdout up to `cap` bytes (then git is killed) and the last 64 KiB of stderr, read together."""

    async def head(stream: asyncio.StreamReader | None) -> bytes:
        buf = b""
        while stream is not None and (chunk := await stream.read(65536)):
            buf = (buf + chunk)[:cap]
            if len(buf) >= cap:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await drain(stream)  # to its end: a pipe left paused would keep proc.wait() waiting forever
                break
        return buf

    out, err = await asyncio.gather(head(proc.stdout), read_to_end(proc.stderr, 65536))
    await proc.wait()
    return out, err


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
