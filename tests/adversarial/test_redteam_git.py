"""Red team: an agent's `.git` and work tree against Factory's own git (finalize: secure, commit, diff, push).

Real git on real clones of a real mirror (the `clones` fixture of test_git_walls.py). Each attack plants
what an agent in the sandbox can write (it owns the whole checkout, `.git` included) and runs the git
Factory runs after the agent; the test fails if a command of the agent's choosing ran, or if Factory's
git could be made to hang.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
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
