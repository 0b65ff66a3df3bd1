"""Attacks on the trimmed commit-and-push path an agent run now takes itself (activities/_agent_push.py,
factory/git/clones.py commit_all / secure / unpushed): what the agent leaves in its checkout, `.git` included.

Real git on real clones of one mirror (the `clones` fixture). As root and as a normal user alike: nothing here
depends on privileges (the checkout is the agent's either way)."""

from __future__ import annotations

import subprocess

import pytest

from factory.git.clones import remote_refs
from factory.git.commands import GitError
from tests.adversarial.test_git_walls import clones  # noqa: F401 (the fixture)

pytestmark = pytest.mark.adversarial


def _tracked(clone) -> set[str]:  # noqa: ANN001
    out = subprocess.run(["git", "--git-dir", str(clone.git_dir), "ls-tree", "-r", "--name-only", "HEAD"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return set(out.split())


async def test_an_untracked_name_shaped_like_a_gitlink_entry_hides_no_other_file(clones):  # noqa: F811
    # an untracked file named like a `ls-files --stage` line for a gitlink: if the one listing that gives both
    # gitlinks and untracked entries mixed them up, "work.txt" would be left out of Factory's commit
    _root, _mirror, (one, _two) = clones
    (one.path / "work.txt").write_text("work\n")
    (one.path / f"160000 {'a' * 40} 0\twork.txt").write_text("decoy\n")
    await one.secure("factory/task-1")
    assert await one.commit_all("factory: work")
    assert "work.txt" in _tracked(one)


async def test_a_nested_repository_and_a_planted_gitlink_are_left_out_not_failing_the_commit(clones):  # noqa: F811
    _root, _mirror, (one, _two) = clones
    nested = one.path / "vendored"
    nested.mkdir()
    subprocess.run(["git", "init", "-q", str(nested)], check=True)
    (one.path / "work.txt").write_text("work\n")
    await one.secure("factory/task-1")
    assert await one.commit_all("factory: work")
    assert "work.txt" in _tracked(one) and not any(p.startswith("vendored") for p in _tracked(one))


async def test_nothing_but_a_nested_repository_is_no_commit_and_no_failure(clones):  # noqa: F811
    # the commit fails with nothing staged; Factory reads that as "nothing to commit", not as an error to retry
    _root, _mirror, (one, _two) = clones
    subprocess.run(["git", "init", "-q", str(one.path / "only-a-repo")], check=True)
    await one.secure("factory/task-1")
    assert await one.commit_all("factory: nothing") is False


async def test_a_head_pointing_nowhere_is_a_named_failure_not_an_empty_commit(clones):  # noqa: F811
    # read-tree HEAD runs without asking first; a HEAD the agent broke must fail, not commit a tree without the base
    _root, _mirror, (one, _two) = clones
    (one.path / "work.txt").write_text("work\n")
    (one.git_dir / "refs" / "heads" / "factory" / "task-1").write_text("0" * 40 + "\n")
    await one.secure("factory/task-1")
    with pytest.raises(GitError):
        await one.commit_all("factory: work")


async def test_a_planted_remote_ref_does_not_make_factory_believe_the_branch_was_pushed(clones):  # noqa: F811
    # the push decision takes its refs from what secure() synced from the mirror (Factory's), not the clone's own
    _root, mirror, (one, _two) = clones
    (one.path / "work.txt").write_text("work\n")
    ref = one.git_dir / "refs" / "remotes" / "origin" / "factory" / "task-1"
    ref.parent.mkdir(parents=True, exist_ok=True)
    await one.commit_all("factory: work")
    head = subprocess.run(["git", "--git-dir", str(one.git_dir), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    ref.write_text(head + "\n")  # "already pushed", says the agent
    refs = await one.secure("factory/task-1")
    assert "refs/remotes/origin/factory/task-1" not in refs
    assert refs == await remote_refs(mirror)
    assert await one.unpushed("factory/task-1", "main", None, refs) == 1
