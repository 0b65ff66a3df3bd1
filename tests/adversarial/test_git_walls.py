"""Attacks on the walls between an agent's checkout and Factory's git, each run for real.

- The shared mirror, taken over: a run turns its `.git` into a file `gitdir: <mirror>` and makes sure
  it gets another run (a question, or a protocol line that used to fail the activity); that run must
  not start, and a `.git` planted inside the mirror must never configure Factory's fetch.
- A symlinked `.git`, a planted `commondir`, alternates aimed at the data dir or another task's clone:
  nothing of them decides what a run sees.
- Factory's git never discovers a repository: a hostile repository around the worker's working
  directory is never read, and every call site names its git dir.
- A ref planted so Factory believes the branch is pushed; submodule `update = !cmd`, info/attributes
  and a nested repository at finalize.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.exceptions import ApplicationError

from activities._agent_process import checkout_binds
from factory.config import load_config
from factory.git.clones import TaskClone, mirror_config, mirror_path, sync_mirror
from factory.git.commands import git
from factory.git.repos import git_env
from factory.store.tables import AgentRun, Message, session_scope
from tests.adversarial.conftest import _python_for_user
from tests.conftest import ROOT, make_remote, remote_file
from tests.fakes.anthropic import Text, ToolUse

pytestmark = pytest.mark.adversarial


def bash(command: str) -> list[ToolUse]:
    """A Bash call running `command` as a script the CLI's own checks cannot read (they ask before `.git` writes)."""
    encoded = base64.b64encode(command.encode()).decode()
    return [ToolUse("Bash", {"command": f"echo {encoded} | base64 -d | sh"})]


def sh(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def plant_mirror_git(mirror: Path, evil: Path, marker: Path) -> None:
    """What an agent with the mirror bound writable planted: `<mirror>/.git`, a repository of its own whose
    config makes the fetch run its command and take its refs (git would discover it from the mirror)."""
    sh("git", "init", "-q", "--bare", str(mirror / ".git"))
    (mirror / ".git" / "config").write_text(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n"
        f'[remote "origin"]\n\turl = file://{evil}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n'
        f"\tuploadpack = env > {marker}; git-upload-pack\n"
    )


# --- (a) the mirror takeover, end to end ------------------------------------------------------------


async def test_a_git_file_naming_the_mirror_gets_no_further_run_and_the_mirror_stays_factorys(
    start_factory, model, tmp_path
):
    mirror = mirror_path(tmp_path / "ws", "demo")
    evil, marker = make_remote(tmp_path / "evil.git", {"EVIL.md": "chosen by the agent\n"}), tmp_path / "uploadpack-ran"
    overflow = json.dumps({"type": "message", "content": "forcing a retry", "reply_to": 2**70})
    asks = json.dumps({"type": "question", "question": "Shall I go on?"})
    takeover = (
        f"mkdir -p {mirror}/.git && cp -r .git/. {mirror}/.git/ 2>/dev/null; "
        f"printf '[remote \"origin\"]\\n\\turl = file://{evil}\\n\\tuploadpack = touch {marker}; git-upload-pack\\n' "
        f">> {mirror}/.git/config; echo RESULT:second-run:$?"
    )
    model.add_scenario(
        "takeover",
        [
            bash(f"rm -rf .git && printf 'gitdir: {mirror}\\n' > .git && cat .git && echo RESULT:planted"),
            Text(f"Planted.\n{overflow}\n{asks}"),
            bash(takeover),  # only a second run in this checkout would get here
            Text("done"),
        ],
    )
    model.add_scenario("after", [bash("echo after > after.txt"), Text("done")])
    async with start_factory() as h:
        url = f"file://{h.remote}"
        t = await h.create("Take over the mirror", "takeover")
        waiting = await h.wait_for(t["id"], {"awaiting_input", "failed", "done"})
        assert waiting["status"] == "awaiting_input", waiting
        with session_scope(h.runtime.engine) as s:
            runs = list(s.exec(select(AgentRun).where(AgentRun.task_id == t["id"])))
            posted = list(s.exec(select(Message).where(Message.task_id == t["id"], Message.sender == "coder")))
        assert "RESULT:planted" in model.requests_for("takeover")[-1].all_text  # the `.git` file was written
        assert len(runs) == 1, "the overflowing reply_to made the run fail and retry"
        assert [(m.content, m.reply_to) for m in posted] == [("forcing a retry", None)]
        assert (mirror / "config").read_text() == mirror_config(url)

        r = await h.api.post(f"/api/tasks/{t['id']}/answer", json={"answer": "yes"})
        assert r.status_code == 200, r.text
        failed = await h.wait_for(t["id"], {"failed", "done"})
        await h.settled(t["id"])
        assert failed["status"] == "failed" and "tampered" in (failed["error"] or ""), failed
        assert len(model.requests_for("takeover")) == 2  # the second run never started
        assert not (mirror / ".git").exists() and (mirror / "config").read_text() == mirror_config(url)

        # had a run got the mirror (an older layout let one): its planted `.git` never configures Factory's fetch
        plant_mirror_git(mirror, evil, marker)
        base = sh("git", "rev-parse", "main", cwd=h.remote).strip()
        t2 = await h.create("A later task", "after")
        done = await h.wait_for(t2["id"], {"done", "failed"})
        assert done["status"] == "done", done
        assert not marker.exists(), "the planted uploadpack ran in Factory's fetch"
        assert sh("git", "rev-parse", f"{done['branch']}^", cwd=h.remote).strip() == base  # the real base
        assert remote_file(h.remote, done["branch"], "EVIL.md") is None
        assert (mirror / "config").read_text() == mirror_config(url)


# --- (b) `.git` links, commondir, alternates ----------------------------------------------------------


@pytest.fixture
async def clones(tmp_path):
    """Two tasks' real clones of one mirror, and the workspace root."""
    remote = make_remote(tmp_path / "remote.git")
    url, root = f"file://{remote}", tmp_path / "ws"
    mirror = mirror_path(root, "demo")
    await sync_mirror(mirror, url, git_env(load_config(tmp_path / "none.yml"), url))
    made = []
    for n in (1, 2):
        clone = TaskClone(root / "worktrees" / f"task-{n}", mirror, url, "Factory", "f@example.com")
        await clone.create(f"factory/task-{n}", "refs/remotes/origin/main")
        made.append(clone)
    (tmp_path / "data").mkdir()
    return root, mirror, made


def _binds(root: Path, mirror: Path, clone: TaskClone) -> list[Path] | ApplicationError:
    try:
        return checkout_binds(clone.path, root, mirror)
    except ApplicationError as exc:  # the refusal is what is tested
        return exc


async def test_what_a_run_sees_comes_from_factorys_record_not_the_git_dir(clones, tmp_path):
    root, mirror, (one, two) = clones
    assert _binds(root, mirror, one) == [mirror / "objects"]  # an untouched clone: the mirror's objects, read-only
    data = tmp_path / "data"
    attacks = {
        "alternates at the data dir": lambda: _alternates(one, f"{data}\n"),
        "alternates at another task's clone": lambda: _alternates(one, f"{two.git_dir / 'objects'}\n"),
        "a second alternates line": lambda: _alternates(one, f"{mirror / 'objects'}\n{data}\n"),
        "a huge alternates file": lambda: _alternates(one, f"{mirror / 'objects'}\n" + "#" * 10_000_000),
        "alternates a link": lambda: _link_alternates(one, data),
        "commondir at the mirror": lambda: (one.git_dir / "commondir").write_text(f"{mirror}\n"),
        "`.git` a link to another task's": lambda: _relink(one, two.git_dir),
        "`.git` a file naming the mirror": lambda: _gitfile(one, mirror),
    }
    for name, attack in attacks.items():
        _restore(one)
        assert _binds(root, mirror, one) == [mirror / "objects"], name
        attack()
        got = _binds(root, mirror, one)
        assert isinstance(got, ApplicationError), (name, got)
        assert got.type == "UnsafeCheckout" and got.non_retryable and "tampered" in str(got), (name, got)
    # a worktree path that is not one of Factory's checkouts is refused before anything is bound
    assert "not a checkout" in str(_binds(root, mirror, TaskClone(tmp_path, mirror, "", "", "")))


def _link_alternates(clone: TaskClone, data: Path) -> None:
    target = data / "alternates"
    target.write_text(f"{clone.shared_objects}\n")  # the right line, through a link
    (clone.git_dir / "objects" / "info" / "alternates").unlink()
    (clone.git_dir / "objects" / "info" / "alternates").symlink_to(target)


def _alternates(clone: TaskClone, text: str) -> None:
    (clone.git_dir / "objects" / "info" / "alternates").write_text(text)


def _relink(clone: TaskClone, target: Path) -> None:
    saved = clone.path / ".git-saved"
    clone.git_dir.rename(saved)
    clone.git_dir.symlink_to(target)


def _gitfile(clone: TaskClone, mirror: Path) -> None:
    saved = clone.path / ".git-saved"
    clone.git_dir.rename(saved)
    clone.git_dir.write_text(f"gitdir: {mirror}\n")


def _restore(clone: TaskClone) -> None:
    """Put the clone's own `.git` back (the attacks above move it aside) and Factory's files in it."""
    saved = clone.path / ".git-saved"
    if saved.exists():
        clone.git_dir.unlink()
        saved.rename(clone.git_dir)
    (clone.git_dir / "commondir").unlink(missing_ok=True)
    (clone.git_dir / "objects" / "info" / "alternates").unlink(missing_ok=True)
    _alternates(clone, f"{clone.shared_objects}\n")


async def test_a_run_after_a_symlinked_git_or_a_commondir_does_not_start(factory_as):
    """Through the real sandbox, with Factory as root and as an unprivileged user: the first run plants,
    the second is refused before bwrap is built."""
    for plant in ("mv .git .git-real && ln -s .git-real .git", "echo /etc > .git/commondir"):
        first = factory_as.sandbox(f"rm -f .git/commondir; {plant}; echo PLANTED", task_id=3)
        assert first.rc == 0 and "PLANTED" in first.stdout, first
        second = factory_as.sandbox("echo SECOND-RUN", task_id=3)
        assert "SECOND-RUN" not in second.stdout and "tampered" in second.stderr, second
        clean = "rm -f .git/commondir; [ -L .git ] && rm .git && mv .git-real .git; true"
        subprocess.run(["sh", "-c", clean], cwd=second.worktree or first.worktree, check=True)


# --- (c) protocol numbers that do not fit a column ---------------------------------------------------


async def test_protocol_numbers_that_overflow_a_column_are_ignored_not_retried(start_factory, model):
    lines = [
        {"type": "message", "content": f"reply {i}", "reply_to": v, "to": "reviewer"}
        for i, v in enumerate([2**64, -1, 2**31, True, "7", 1.5, {"a": 1}])
    ] + [{"type": "message", "content": "nul\u0000byte", "message_type": "x" * 10_000, "to": ["list"]}]
    text = "\n".join(json.dumps(line) for line in lines)
    model.add_scenario("overflow", [Text(text)])
    async with start_factory() as h:
        t = await h.create("Overflow the board", "overflow")
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        with session_scope(h.runtime.engine) as s:
            runs = list(s.exec(select(AgentRun).where(AgentRun.task_id == t["id"])))
            posted = list(s.exec(select(Message).where(Message.task_id == t["id"], Message.sender == "coder")))
    assert len(runs) == 1  # one run: no value made the activity fail and retry
    assert len(posted) == len(lines) and all(m.reply_to is None for m in posted), posted
    assert all("\0" not in m.content and len(m.message_type) <= 100 for m in posted)


# --- Factory's git never discovers a repository -------------------------------------------------------


_LS_REMOTE = """
import asyncio, sys
from factory.config import load_config
from factory.contracts import RepoRef
from factory.git.commands import git
from factory.git.repos import check_reachable, git_env
cfg = load_config(sys.argv[1] + "/none.yml", repos={})
url = "file://" + sys.argv[1] + "/remote.git"
print(asyncio.run(git("ls-remote", "--heads", url, git_dir=None, env=git_env(cfg))))
check_reachable(cfg, RepoRef(name="x/y", url=url, github="x/y"))
print("REACHABLE")
"""


def test_a_hostile_repository_around_the_workers_directory_is_never_read(factory_as):
    """Factory (as root, and as a user that does not own the repository: git's own ownership check is
    off in Factory's git, the sandbox owning the checkouts) started from inside someone else's repository."""
    tmp = factory_as.tmp
    hostile, marker = tmp / "hostile", tmp / "ran"
    sh("git", "init", "-q", str(hostile))
    # read by any git run from there: every file:// URL sent nowhere, and ssh through a command of its own
    sh("git", "config", "--file", str(hostile / ".git" / "config"), "url.file:///nonexistent/.insteadOf", "file://")
    sh("git", "config", "--file", str(hostile / ".git" / "config"), "core.sshCommand", f"touch {marker}")
    remote = make_remote(tmp / "remote.git")
    prefix = []
    if factory_as.name == "user":  # the remote is the user's (a server's, in life); the hostile repository is not
        sh("chown", "-R", f"{factory_as.uid}:{factory_as.gid}", str(remote))
        prefix = [*_python_for_user(), "setpriv", f"--reuid={factory_as.uid}", f"--regid={factory_as.gid}"]
        prefix.append("--clear-groups")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
    argv = [*prefix, os.path.realpath(sys.executable), "-c", _LS_REMOTE, str(tmp)]
    run = subprocess.run(argv, cwd=hostile, env=env, capture_output=True, text=True, timeout=60)
    # the planted insteadOf would have sent both nowhere
    assert run.returncode == 0 and "refs/heads/main" in run.stdout and "REACHABLE" in run.stdout, run.stderr[-3000:]
    assert not marker.exists()


def test_every_factory_git_call_names_its_git_dir():
    """`git()` has no default for `git_dir`, and every call in the product passes it by name."""
    assert inspect.signature(git).parameters["git_dir"].default is inspect.Parameter.empty
    missing = []
    for layer in ("api", "temporal", "workflows", "activities", "factory"):
        for path in (ROOT / layer).rglob("*.py"):
            where = path.relative_to(ROOT)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "git":
                    if not any(k.arg == "git_dir" for k in node.keywords):
                        missing.append(f"{where}:{node.lineno}")
                # an argv of its own (["git", ...]) would bypass git(): only the ls-remote of repos.py does, cwd-less
                if isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant):
                    if node.elts[0].value == "git" and str(where) != "factory/git/repos.py":
                        missing.append(f"{where}:{node.lineno} runs git itself")
    assert missing == []


# --- (e) refs, submodules and attributes at finalize ---------------------------------------------------


async def test_a_planted_ref_does_not_keep_the_work_from_the_remote(start_factory, model, tmp_path):
    m = tmp_path / "markers"
    m.mkdir()
    plant = (
        f"set -e; printf '[submodule \"s\"]\\n\\tpath = s\\n\\turl = ./s\\n\\tupdate = !touch {m}/gitmodules\\n' > .gitmodules; "
        f"git config submodule.s.update '!touch {m}/submodule-update'; "
        f"mkdir -p .git/info && echo '* filter=evil' > .git/info/attributes; "
        f"git config filter.evil.clean 'touch {m}/info-attributes; cat'; git config filter.evil.required true; "
        f"git init -q nested && git -C nested config core.fsmonitor 'touch {m}/nested-fsmonitor; false'; "
        "echo inner > nested/inner.txt; echo work > work.txt; "
        "git -c filter.evil.clean=cat add work.txt .gitmodules && git commit -qm work; "
        'b=$(git branch --show-current); git update-ref "refs/remotes/origin/$b" HEAD; '  # "already pushed"
        "echo PLANTED"
    )
    model.add_scenario("refs", [bash(plant), Text("done")])
    async with start_factory() as h:
        t = await h.create("Plant refs", "refs")
        done = await h.wait_for(t["id"], {"done", "failed"})
        await h.settled(t["id"])
    assert "PLANTED" in "\n".join(r.all_text for r in model.requests_for("refs"))
    assert done["status"] == "done", done
    assert sorted(p.name for p in m.iterdir()) == []
    # the work reached the remote although the agent set the remote-tracking ref to claim it had
    assert remote_file(h.remote, done["branch"], "work.txt") == "work\n"
    assert remote_file(h.remote, done["branch"], "nested/inner.txt") is None  # an untracked nested repo stays out


async def test_lock_files_and_a_crafted_index_do_not_keep_the_work_from_the_remote(start_factory, model):
    """Locks left under `.git` made every Factory `git add` fail (finalize retried for ever), a `shallow` file every
    push; an index marking a changed file assume-unchanged or skip-worktree hid it from Factory's commit."""
    plant = (
        "set -e; echo changed > README.md; echo hidden > hidden.txt; git add hidden.txt; "
        "git commit -qm hidden; git rev-parse HEAD > .git/shallow; echo changed-again > hidden.txt; "
        "git update-index --assume-unchanged README.md; git update-index --skip-worktree hidden.txt; "
        'b=$(git branch --show-current); touch .git/index.lock .git/HEAD.lock ".git/refs/heads/$b.lock"; '
        "touch .git/packed-refs.lock .git/config.lock; echo PLANTED"
    )
    model.add_scenario("locks", [bash(plant), Text("done")])
    async with start_factory() as h:
        t = await h.create("Plant locks", "locks")
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=60)
        await h.settled(t["id"])
    assert "PLANTED" in "\n".join(r.all_text for r in model.requests_for("locks"))
    assert done["status"] == "done", done
    assert remote_file(h.remote, done["branch"], "README.md") == "changed\n"
    assert remote_file(h.remote, done["branch"], "hidden.txt") == "changed-again\n"
