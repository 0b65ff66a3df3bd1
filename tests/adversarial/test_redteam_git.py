"""Red team: an agent's `.git` and work tree against Factory's own git (finalize: secure, commit, diff, push).

Real git on real clones of a real mirror (the `clones` fixture of test_git_walls.py). Each attack plants
what an agent in the sandbox can write (it owns the whole checkout, `.git` included) and runs the git
Factory runs after the agent; the test fails if a command of the agent's choosing ran, or if Factory's
git could be made to hang.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factory.git.clones import UnsafeCloneError
from factory.git.commands import GitError
from tests.adversarial.test_git_walls import clones  # noqa: F401 (the fixture)
from tests.conftest import remote_file

pytestmark = pytest.mark.adversarial


def _evil_config(marker: Path, tmp: Path) -> str:
    run = f"touch {marker}"
    (tmp / "included.cfg").write_text(f"[core]\n\tfsmonitor = {run}-include\n[alias]\n\tadd = !{run}-alias\n")
    return f"""[core]
\trepositoryformatversion = 1
\tbare = false
\tfsmonitor = {run}-fsmonitor
\tsshCommand = {run}-ssh
\tgitProxy = {run}-proxy
\taskPass = {run}-askpass
\teditor = {run}-editor
\tpager = {run}-pager
\talternateRefsCommand = {run}-altrefs
\thooksPath = {tmp}/hooks
\tattributesFile = {tmp}/attributes
[extensions]
\tworktreeConfig = true
[include]
\tpath = {tmp}/included.cfg
[includeIf "gitdir:/"]
\tpath = {tmp}/included.cfg
[alias]
\tcommit = !{run}-alias-commit
\tpush = !{run}-alias-push
[filter "x"]
\tclean = {run}-clean
\tsmudge = {run}-smudge
\tprocess = {run}-process
\trequired = true
[diff "x"]
\ttextconv = {run}-textconv
\tcommand = {run}-diffcmd
[diff]
\texternal = {run}-external
[credential]
\thelper = !{run}-credential
[gpg]
\tprogram = {run}-gpg
[commit]
\tgpgSign = true
[remote "origin"]
\turl = file:///nonexistent
\treceivepack = {run}-receivepack
\tuploadpack = {run}-uploadpack
\tvcs = evil
[url "file://{tmp}/evil.git"]
\tinsteadOf = file://
[uploadpack]
\tpackObjectsHook = {run}-packobjects
"""


async def test_no_config_hook_attribute_or_include_of_the_agents_runs_in_factorys_git(clones, tmp_path):  # noqa: F811
    root, mirror, (one, _two) = clones
    marker = tmp_path / "pwned"
    hooks = one.git_dir / "hooks"
    hooks.mkdir(exist_ok=True)
    (tmp_path / "hooks").mkdir()
    for d in (hooks, tmp_path / "hooks"):  # both the default hooks dir and the one config names
        for name in ("pre-commit", "commit-msg", "post-commit", "pre-push", "reference-transaction",
                     "post-index-change", "prepare-commit-msg", "fsmonitor-watchman", "post-checkout"):  # fmt: skip
            hook = d / name
            hook.write_text(f"#!/bin/sh\ntouch {marker}-hook-{name}\n")
            hook.chmod(0o755)
    cfg = _evil_config(marker, tmp_path)
    (one.git_dir / "config").write_text(cfg)
    (one.git_dir / "config.worktree").write_text(cfg)
    (one.git_dir / "info").mkdir(exist_ok=True)
    (one.git_dir / "info" / "attributes").write_text("* filter=x diff=x merge=x\n")
    (tmp_path / "attributes").write_text("* filter=x diff=x merge=x\n")
    (one.path / ".gitattributes").write_text("* filter=x diff=x merge=x text eol=crlf\n")
    (one.path / "work.txt").write_text("the agent's work\n")

    await one.secure("factory/task-1")
    assert await one.commit_all("factory: work")
    await one.numstat("refs/remotes/origin/main")
    assert await one.unpushed("factory/task-1", "main") == 1
    await one.push("factory/task-1", {})
    assert await one.commit_all("again") is False
    fired = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pwned"))
    assert fired == [], f"the agent's commands ran in Factory's git: {fired}"
    remote = Path(one.url.removeprefix("file://"))
    assert remote_file(remote, "factory/task-1", "work.txt") == "the agent's work\n"


def _plant_fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


@pytest.mark.parametrize(
    "where",
    [
        "packed-refs",
        "HEAD",
        "refs/heads/factory/task-1",
        "info/exclude",
        "info/attributes",
        "FETCH_HEAD",
        "ORIG_HEAD",
        "logs/HEAD",
        "description",
        "objects/info/packs",
    ],  # fmt: skip
)
async def test_a_fifo_planted_in_git_does_not_hang_factorys_git(clones, where):  # noqa: F811
    _root, _mirror, (one, _two) = clones
    target = one.git_dir / where
    target.parent.mkdir(parents=True, exist_ok=True)
    _plant_fifo(target)
    (one.path / "work.txt").write_text("work\n")
    started = time.monotonic()
    try:
        async with asyncio.timeout(20):
            await one.secure("factory/task-1")
            await one.commit_all("factory: work")
    except (UnsafeCloneError, GitError):
        pass  # a named failure (a repository without HEAD is no repository): Factory does not hang
    except TimeoutError:
        pytest.fail(f"a FIFO at .git/{where} hung Factory's git for {time.monotonic() - started:.0f} s")
    assert time.monotonic() - started < 20


async def test_a_fifo_or_socket_in_the_work_tree_does_not_hang_the_commit(clones):  # noqa: F811
    _root, _mirror, (one, _two) = clones
    os.mkfifo(one.path / "pipe")
    subprocess.run(["python3", "-c", f"import socket; socket.socket(socket.AF_UNIX).bind({str(one.path / 'sock')!r})"],
                   check=True)  # fmt: skip
    (one.path / "work.txt").write_text("work\n")
    async with asyncio.timeout(20):
        await one.secure("factory/task-1")
        assert await one.commit_all("factory: work")
    files = await one.git("ls-files")
    assert "work.txt" in files and "pipe" not in files.split() and "sock" not in files.split(), files
    assert stat.S_ISFIFO(os.lstat(one.path / "pipe").st_mode)


_DIFF_PROBE = """
import asyncio, json, resource, sys
from pathlib import Path
from factory.config import load_config
from factory.git.diff import branch_diff
from factory.git.repos import resolve_repo
tmp, url = Path(sys.argv[1]), sys.argv[2]
cfg = load_config(tmp / "none.yml", workspace_root=str(tmp / "ws"), repos={"demo": {"url": url}})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
d = asyncio.run(branch_diff(cfg, resolve_repo(cfg, "demo"), "factory/task-1", "main"))
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"grew_kib": grew, "truncated": d.truncated, "chars": len(d.patch), "files": len(d.files)}))
"""


def test_the_diff_of_a_huge_committed_file_is_not_read_whole(tmp_path):
    # the agent commits a 128 MiB text file (its file size limit is 1 GiB); the task page's diff read all
    # of `git diff` into the API process (bytes, then a str of it) before cutting it at MAX_PATCH_CHARS
    remote = tmp_path / "remote.git"
    seed = tmp_path / "seed"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_GLOBAL": "/dev/null"}  # fmt: skip
    run = lambda *a: subprocess.run(a, cwd=seed, check=True, env=env, capture_output=True)  # noqa: E731
    seed.mkdir()
    run("git", "init", "-q", "-b", "main")
    (seed / "README.md").write_text("demo\n")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "base")
    run("git", "checkout", "-q", "-b", "factory/task-1")
    # the blob goes straight into the object store (compressed, ~0.4 MiB on disk): no 128 MiB file is written,
    # which on a loaded CI machine's disk took minutes; git's diff still has 128 MiB of text to give,
    # and reading it whole costs the reader more than the 64 MiB allowed below
    line = b"x" * 99 + b"\n"
    hashing = subprocess.Popen(
        ["git", "hash-object", "-w", "--stdin"], cwd=seed, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert hashing.stdin is not None
    for _ in range(128):
        hashing.stdin.write(line * 10486)  # 1 MiB of lines a round
    blob = hashing.communicate()[0].decode().strip()
    assert hashing.returncode == 0
    run("git", "update-index", "--add", "--cacheinfo", f"100644,{blob},huge.txt")
    run("git", "commit", "-q", "-m", "huge")
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(remote)], check=True, capture_output=True)
    probe = subprocess.run(
        [sys.executable, "-c", _DIFF_PROBE, str(tmp_path), f"file://{remote}"],
        capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parents[2],  # 3 s alone
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    got = json.loads(probe.stdout.strip().splitlines()[-1])
    assert got["truncated"] and got["files"] == 1 and got["chars"] <= 400_000, got
    assert got["grew_kib"] < 64 * 1024, f"the diff of a 128 MiB file cost the reader {got['grew_kib'] // 1024} MiB"
