"""Factory's git trusts nothing the agent wrote (architecture decision 12; docs/git-safety.md).

An agent plants hooks, `core.fsmonitor`, `core.hooksPath`, aliases, filter and diff drivers, includes,
signing and ssh commands, a nested repository with its own drivers, and a `commondir` pointing at
the mirror. Factory's commit and push still succeed, none of it runs (each would touch a marker
file), the remote branch holds the agent's work, and nothing reaches the mirror or another task.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.workspace import CleanupInput, FinalizeInput, PrepareInput, WorkspaceActivities
from factory.config import load_config
from factory.contracts import RepoRef
from factory.git.clones import TaskClone, UnsafeCloneError, mirror_config, mirror_path, sync_mirror
from factory.git.commands import git
from factory.git.repos import git_env
from tests.conftest import make_remote, remote_file
from tests.fakes.anthropic import Text, ToolUse

HOOKS = (
    "pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "pre-push", "reference-transaction",
    "post-index-change", "post-checkout", "pre-auto-gc", "post-rewrite", "push-to-checkout",
)  # fmt: skip


def plant_script(markers: Path) -> str:
    """What a hostile agent runs in its checkout: each planted thing touches `markers/<what>` if run."""
    m = str(markers)
    hooks = " ".join(HOOKS)
    return f"""set -e
M={m}
G=$(git rev-parse --absolute-git-dir); H=$(git rev-parse --path-format=absolute --git-path hooks)
mkdir -p "$H" "$G/evil-hooks"
for h in {hooks}; do
  printf '#!/bin/sh\\ntouch %s/hook-%s\\n' "$M" "$h" > "$H/$h"; chmod +x "$H/$h"
  printf '#!/bin/sh\\ntouch %s/hookspath-%s\\n' "$M" "$h" > "$G/evil-hooks/$h"; chmod +x "$G/evil-hooks/$h"
done
printf '#!/bin/sh\\ntouch %s/gpg\\nexit 1\\n' "$M" > "$G/evil-gpg"; chmod +x "$G/evil-gpg"
printf '[core]\\n\\tfsmonitor = touch {m}/include-fsmonitor; false\\n' > "$G/evil-include"
printf '[core]\\n\\thooksPath = %s/evil-hooks\\n[filter "evil"]\\n\\tclean = touch {m}/includeif-clean; cat\\n' \\
  "$G" > "$G/evil-includeif"
git config core.hooksPath "$G/evil-hooks"
git config core.fsmonitor "touch $M/fsmonitor; false"
git config alias.ci "!touch $M/alias"
git config alias.status "!touch $M/alias-status"
git config filter.evil.clean "sh -c 'touch $M/filter-clean; cat'"
git config filter.evil.smudge "sh -c 'touch $M/filter-smudge; cat'"
git config filter.evil.required true
git config diff.evil.textconv "sh -c 'touch $M/textconv; cat \\"\\$1\\"' -"
git config diff.external "sh -c 'touch $M/diff-external'"
git config core.sshCommand "touch $M/ssh-command"
git config credential.helper "!touch $M/credential"
git config commit.gpgSign true
git config gpg.program "$G/evil-gpg"
git config core.pager "touch $M/pager"
git config core.editor "touch $M/editor"
git config include.path "$G/evil-include"
git config includeIf.gitdir:/.path "$G/evil-includeif"
printf '* filter=evil diff=evil\\n' > .gitattributes
printf 'the agent was here\\n' > work.txt
"""


def _run(*args: str, cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def _markers(markers: Path) -> list[str]:
    return sorted(p.name for p in markers.iterdir())


def _files_naming(root: Path, needle: str) -> list[str]:
    """Files under `root` whose content names `needle` (paths relative to root)."""
    found = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath, name)
            if needle.encode() in p.read_bytes():
                found.append(str(p.relative_to(root)))
    return sorted(found)


# --- Factory's git helpers, directly (fast) -------------------------------------------------


async def test_factory_git_runs_no_hook_fsmonitor_or_user_config(tmp_path, monkeypatch):
    """`git()` alone, in a plain repository: no hook, no fsmonitor, no global config, no worker env."""
    markers = tmp_path / "markers"
    markers.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[core]\n\tfsmonitor = touch {markers}/global-fsmonitor; false\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("FACTORY_PROBE_SECRET", "s3cr3t-probe")
    repo = tmp_path / "repo"
    _run("git", "init", "-q", "-b", "main", str(repo), cwd=tmp_path)
    hooks = repo / ".git" / "hooks"
    for h in HOOKS:
        (hooks / h).write_text(f"#!/bin/sh\ntouch {markers}/hook-{h}\n")
        (hooks / h).chmod(0o755)
    _run("git", "config", "core.fsmonitor", f"touch {markers}/fsmonitor; false", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    await git("add", "-A", git_dir=repo / ".git", work_tree=repo)
    await git("-c", "user.name=F", "-c", "user.email=f@x", "commit", "--no-verify", "-q", "-m", "one", git_dir=repo / ".git", work_tree=repo)
    assert (await git("log", "--format=%s", git_dir=repo / ".git")).strip() == "one"
    assert _markers(markers) == []
    # the global config (HOME's .gitconfig) is not read, nor is the worker's environment passed on
    assert (await git("config", "--global", "--list", git_dir=None, check=False)).strip() == ""
    env_seen = await git("-c", "alias.envdump=!env", "envdump", git_dir=repo / ".git")
    assert "s3cr3t-probe" not in env_seen and "GIT_CONFIG_GLOBAL=/dev/null" in env_seen
    assert f"HOME={home}" not in env_seen
    assert "FACTORY_PROBE_SECRET" not in git_env(load_config(tmp_path / "none.yml"), "file:///x.git")


async def _clone_of(tmp_path: Path, task: int = 1) -> tuple[Path, Path, TaskClone]:
    remote = make_remote(tmp_path / "remote.git")
    url = f"file://{remote}"
    mirror = mirror_path(tmp_path / "ws", "demo")
    await sync_mirror(mirror, url, git_env(load_config(tmp_path / "none.yml"), url))
    clone = TaskClone(tmp_path / "ws" / "worktrees" / f"task-{task}", mirror, url, "Factory", "factory@example.com")
    await clone.create(f"factory/task-{task}", "refs/remotes/origin/main")
    return remote, mirror, clone


async def test_task_clone_ignores_everything_planted_in_it(tmp_path):
    """The clone's helpers (secure, commit, diff, push) with every planted thing, a nested repository
    with its own drivers, and a `commondir` aimed at the mirror."""
    markers = tmp_path / "markers"
    markers.mkdir()
    remote, mirror, clone = await _clone_of(tmp_path)
    path = clone.path
    mirror_refs = _run("git", "for-each-ref", cwd=mirror)
    # a nested repository the agent committed as a gitlink, whose own config runs a clean filter
    sub = path / "sub"
    _run("git", "init", "-q", "-b", "main", str(sub), cwd=path)
    (sub / "f").write_text("hello\n")
    _run("git", "add", "f", cwd=sub)
    _run("git", "-c", "user.name=a", "-c", "user.email=a@x", "commit", "-q", "-m", "s", cwd=sub)
    _run("git", "add", "sub", cwd=path)
    _run("git", "-c", "user.name=a", "-c", "user.email=a@x", "commit", "-q", "-m", "add sub", cwd=path)
    _run("git", "config", "filter.evil.clean", f"sh -c 'touch {markers}/nested-clean; cat'", cwd=sub)
    _run("git", "config", "core.fsmonitor", f"touch {markers}/nested-fsmonitor; false", cwd=sub)
    (sub / ".gitattributes").write_text("* filter=evil\n")
    (sub / "f").write_text("hellp\n")  # same size, new mtime: git must read it again, through the filter
    os.utime(sub / "f", (946684800, 946684800))
    subprocess.run(["sh", "-c", plant_script(markers)], cwd=path, check=True)
    (path / ".git" / "commondir").write_text(f"{mirror}\n")
    _run("git", "config", "--file", str(path / ".git" / "config"), "core.worktree", str(tmp_path), cwd=path)

    await clone.secure("factory/task-1")
    assert await clone.commit_all("factory: leftovers")
    ahead = await clone.count("refs/remotes/origin/main")
    assert ahead == 2
    assert "work.txt" in await clone.numstat("refs/remotes/origin/main")
    assert await clone.unpushed("factory/task-1", "main") == 2
    await clone.push("factory/task-1", git_env(load_config(tmp_path / "none.yml"), clone.url))
    # the remote has the clone's HEAD (the clone keeps no record of it: `secure` resets its remote refs)
    assert _run("git", "rev-parse", "refs/heads/factory/task-1", cwd=remote).strip() == await clone.head()

    assert _markers(markers) == []
    assert remote_file(remote, "factory/task-1", "work.txt") == "the agent was here\n"
    assert remote_file(remote, "factory/task-1", ".gitattributes") == "* filter=evil diff=evil\n"
    # nothing was written into the mirror, and its config is still Factory's
    assert _run("git", "for-each-ref", cwd=mirror) == mirror_refs
    assert (mirror / "config").read_text() == mirror_config(clone.url)
    config = (path / ".git" / "config").read_text()
    for planted in ("evil", "fsmonitor", "hooksPath", "alias", "include", "sshCommand", "gpg", "worktree"):
        assert planted not in config


async def test_a_tampered_git_dir_is_refused_and_its_target_untouched(tmp_path):
    """A symlink in `.git` (or `.git` replaced by a link) would aim Factory's writes elsewhere."""
    _, mirror, clone = await _clone_of(tmp_path)
    before = (mirror / "config").read_bytes()
    cfg = clone.git_dir / "config"
    cfg.unlink()
    cfg.symlink_to(mirror / "config")
    with pytest.raises(UnsafeCloneError, match="symlink"):
        await clone.secure("factory/task-1")
    assert (mirror / "config").read_bytes() == before

    _, mirror2, clone2 = await _clone_of(tmp_path / "two")
    real = clone2.git_dir.rename(clone2.path / "elsewhere")
    clone2.git_dir.symlink_to(real)
    with pytest.raises(UnsafeCloneError, match="not a plain directory"):
        await clone2.secure("factory/task-1")


# --- the layout, through the workspace activities ---------------------------------------------


async def test_the_checkout_reaches_the_mirror_only_through_read_only_objects(tmp_path):
    """A task's checkout is a repository of its own: `.git` is a directory, the only path to the
    mirror is `objects/info/alternates`, and what the agent's git writes stays in that checkout."""
    remote = make_remote(tmp_path / "remote.git")
    cfg = load_config(
        tmp_path / "none.yml", workspace_root=str(tmp_path / "ws"), repos={"demo": {"url": f"file://{remote}"}}
    )
    repo = RepoRef(name="demo", url=f"file://{remote}", configured=True)
    acts = WorkspaceActivities(cfg, "host", "hq", "aq")
    env = ActivityEnvironment()
    ws = await env.run(acts.prepare_workspace, PrepareInput(task_id=7, title="Layout", repo=repo))
    other = await env.run(acts.prepare_workspace, PrepareInput(task_id=8, title="Other", repo=repo))
    path, mirror = Path(ws.path), mirror_path(cfg.workspace_path, "demo")
    assert path == cfg.workspace_path / "worktrees" / "task-7"
    assert (path / ".git").is_dir() and not (path / ".git").is_symlink()
    assert ws.shared_objects == str(mirror / "objects")
    assert _files_naming(path, str(mirror)) == [".git/objects/info/alternates"]
    assert (path / ".git" / "objects" / "info" / "alternates").read_text() == f"{mirror / 'objects'}\n"
    assert ws.base_sha == _run("git", "rev-parse", "main", cwd=remote).strip()

    # the agent's own git: config, hooks and refs land in its checkout, not the mirror or task 8
    mirror_before = {p: p.read_bytes() for p in mirror.rglob("*") if p.is_file() and "objects" not in p.parts}
    other_config = (Path(other.path) / ".git" / "config").read_bytes()
    _run("git", "config", "core.fsmonitor", "touch /tmp/x", cwd=path)
    hooks = Path(_run("git", "rev-parse", "--path-format=absolute", "--git-path", "hooks", cwd=path).strip())
    assert hooks.is_relative_to(path)
    _run("git", "update-ref", "refs/remotes/origin/main", ws.base_sha, cwd=path)
    after = {p: p.read_bytes() for p in mirror.rglob("*") if p.is_file() and "objects" not in p.parts}
    assert after == mirror_before
    assert (Path(other.path) / ".git" / "config").read_bytes() == other_config

    # a retried prepare reuses the checkout (the agent's files kept); cleanup leaves no trace in the mirror
    (path / "draft.txt").write_text("draft\n")
    again = await env.run(acts.prepare_workspace, PrepareInput(task_id=7, title="Layout", repo=repo))
    assert again.path == ws.path and again.branch == ws.branch and (path / "draft.txt").exists()
    changes = await env.run(acts.finalize_changes, FinalizeInput(task_id=7, workspace=ws, repo=repo, message="m"))
    assert changes.committed and changes.pushed and changes.commits_ahead == 1
    await env.run(acts.cleanup_workspace, CleanupInput(task_id=7, workspace=ws, repo=repo))
    assert not path.exists()
    assert remote_file(remote, ws.branch, "draft.txt") == "draft\n"
    # a later task continues the pushed branch from the remote
    cont = await env.run(acts.prepare_workspace, PrepareInput(task_id=9, title="More", repo=repo, branch=ws.branch))
    assert (Path(cont.path) / "draft.txt").read_text() == "draft\n"
    for w in (other, cont):
        await env.run(acts.cleanup_workspace, CleanupInput(task_id=0, workspace=w, repo=repo))
    assert not (mirror / "worktrees").exists()
    assert sorted(os.listdir(cfg.workspace_path / "worktrees")) == []


# --- the whole pipeline, with a scripted agent that plants everything -------------------------


async def test_planted_hooks_and_config_never_run_in_factorys_commit_and_push(start_factory, model, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    model.add_scenario(
        "plant",
        [
            [ToolUse("Bash", {"command": plant_script(markers)})],
            [ToolUse("Bash", {"command": "git config --get core.fsmonitor; ls .git/hooks"})],
            Text("I changed some things and left them for Factory to commit."),
        ],
    )
    async with start_factory() as h:
        t = await h.create("Plant git traps", "plant")
        done = await h.wait_for(t["id"], {"done", "failed"})
        await h.settled(t["id"])
        assert _markers(markers) == []  # nothing planted ran in Factory's git (finalize and cleanup)
        assert done["status"] == "done", done
        seen = "\n".join(r.all_text for r in model.requests_for("plant"))
        assert "fsmonitor" in seen and "post-commit" in seen  # the agent's planting did work
        assert remote_file(h.remote, done["branch"], "work.txt") == "the agent was here\n"
        assert remote_file(h.remote, done["branch"], ".gitattributes") == "* filter=evil diff=evil\n"
        mirror = h.cfg.workspace_path / "mirrors" / "demo.git"
        assert (mirror / "config").read_text() == mirror_config(f"file://{h.remote}")
        assert not [p for p in mirror.glob("hooks/*") if not p.name.endswith(".sample")]
        assert not (h.cfg.workspace_path / "worktrees" / f"task-{t['id']}").exists()


def test_a_git_command_dies_with_the_worker_that_ran_it(tmp_path):
    # a push the remote held went on after `factory up` was SIGKILLed, then wrote its refs into the checkout
    # the retried cleanup had just removed (a chaos test found the worktree back)
    import signal
    import sys
    import textwrap
    import time

    from tests.procs import pids_gone, pids_running

    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    entered = tmp_path / "hook-entered"
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\ntouch {entered}\nsleep 30\n")
    hook.chmod(0o755)
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)  # fmt: skip
    marker = f"refs/heads/held-{os.getpid()}-{time.time_ns()}"
    script = textwrap.dedent(f"""
        import asyncio
        from factory.git.commands import git
        asyncio.run(git("push", "--no-verify", {str(remote)!r}, "HEAD:{marker}", git_dir={str(work / ".git")!r}))
    """)
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.monotonic() + 30
        while not entered.exists():
            assert worker.poll() is None and time.monotonic() < deadline, "the push never reached the remote"
            time.sleep(0.05)
        assert pids_running(marker)  # `git push ... HEAD:<marker>` waits on the remote's hook
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert not pids_gone(marker, 10), "the push outlived the worker that ran it"
    finally:
        for pid in pids_running(marker):
            os.kill(pid, 9)
        subprocess.run(["pkill", "-f", str(entered)])
