"""Attacks on the live diff (factory/git/live_diff.py, factory/git/worktree_walk.py), each planted for real
from inside an agent's sandbox (the shared harness: Factory as root and as a normal user), then read by
the live diff as Factory reads it, as root (root can read everything the plants aim at):

- git configuration the agent wrote (`.gitattributes` naming filter and diff drivers, `.git/config` with
  `filter.x.clean`, `diff.external`, textconv, `core.fsmonitor`, hooks) never runs: its marker files never
  appear, while the same plant run by plain git does make them (the control);
- links to `/etc/shadow`, to a Factory secret file and to a folder are not followed: their content never
  appears, only the link's own text;
- a FIFO and a socket do not hang the walk; a 900 MB file and 100,000 tiny files are capped and the call
  returns promptly, saying what it left out, without calling unseen base files deleted;
- a `.git` that is a file naming another repository is never read;
- names with newlines, control and bidi characters or a forged patch header render inert.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from factory.git.live_diff import worktree_diff
from tests.conftest import make_remote

pytestmark = pytest.mark.adversarial

BASE = {"README.md": "# demo\n", "calc.py": "def add(a, b):\n    return a - b\n", "zz/keep.txt": "keep\n"}
SEED = "printf '# demo\\n' > README.md; mkdir -p zz; printf 'keep\\n' > zz/keep.txt\n"
EDIT = "printf 'def add(a, b):\\n    return a + b\\n' > calc.py\n"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A bare repository standing for the repo's mirror, and its base commit."""
    repo = make_remote(tmp_path_factory.mktemp("live-diff") / "mirror.git", BASE)
    sha = subprocess.run(["git", "--git-dir", str(repo), "rev-parse", "main"], capture_output=True, text=True)
    return repo, sha.stdout.strip()


def _plant(factory_as, script: str, task_id: int, timeout: float = 120) -> Path:
    r = factory_as.sandbox(f"set -e\n{SEED}{script}", task_id=task_id, timeout=timeout)
    assert r.rc == 0, (r.rc, r.stderr[-2000:])
    return Path(r.worktree)


async def _diff(mirror: tuple[Path, str], worktree: Path, timeout: float = 30):
    return await asyncio.wait_for(worktree_diff(mirror[0], mirror[1], worktree, "factory/task", "main"), timeout)


async def test_git_config_drivers_fsmonitor_and_hooks_the_agent_wrote_never_run(factory_as, mirror, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    hooks = "pre-commit post-checkout post-index-change reference-transaction fsmonitor-watchman"
    worktree = _plant(
        factory_as,
        f"""{EDIT}git init -q .
printf '* filter=x diff=x merge=x\\n*.py text eol=crlf ident\\n' > .gitattributes
cat >> .git/config <<'EOF'
[core]
\tfsmonitor = "touch {marks}/fsmonitor; false"
\thooksPath = .git/hooks
[filter "x"]
\tclean = "touch {marks}/clean; cat"
\tsmudge = "touch {marks}/smudge; cat"
\trequired = true
[diff "x"]
\tcommand = "touch {marks}/diffcmd"
\ttextconv = "touch {marks}/textconv; cat"
[diff]
\texternal = "touch {marks}/external"
EOF
for h in {hooks}; do printf '#!/bin/sh\\ntouch {marks}/hook-$h\\n' > .git/hooks/$h; chmod +x .git/hooks/$h; done
""",
        task_id=11,
    )
    d = await _diff(mirror, worktree)
    assert list(marks.iterdir()) == []  # nothing the agent configured ran
    assert d.live and {f.path for f in d.files} == {"calc.py", ".gitattributes"}
    assert "-    return a - b\n+    return a + b" in d.patch  # the bytes as they are, no filter applied
    assert ".git/" not in d.patch
    # the control: the same checkout given to git as a work tree runs the agent's commands
    subprocess.run(
        ["git", "-c", "safe.directory=*", "--git-dir", str(worktree / ".git"), "--work-tree", str(worktree), "add", "-A"],
        capture_output=True, timeout=60, cwd=worktree,
    )  # fmt: skip
    assert list(marks.iterdir()), "the planted config should run under plain git: the attack is not live"


async def test_links_to_secrets_and_folders_are_not_followed(factory_as, mirror, tmp_path):
    secret = tmp_path / "factory.env"
    secret.write_text("ANTHROPIC_API_KEY=sk-ant-factory-secret-7e2b\n")
    shadow = Path("/etc/shadow").read_text().splitlines()[0]
    worktree = _plant(
        factory_as,
        f"""{EDIT}ln -s /etc/shadow shadow
ln -s {secret} key.env
ln -s /etc etc-link
ln -s /root root-link
ln -sf /etc/shadow calc2.py
""",
        task_id=12,
    )
    d = await _diff(mirror, worktree)
    paths = {f.path for f in d.files}
    assert {"shadow", "key.env", "etc-link", "root-link", "calc2.py", "calc.py"} <= paths
    assert not [p for p in paths if p.startswith(("etc-link/", "root-link/"))]  # the folder link is not walked
    assert shadow not in d.patch and "sk-ant-factory-secret" not in d.patch and "root:" not in d.patch
    assert "new file mode 120000" in d.patch and "+/etc/shadow" in d.patch  # the link's own text, as git shows it


async def test_a_fifo_and_a_socket_do_not_hang_the_walk(factory_as, mirror):
    worktree = _plant(
        factory_as,
        f"""{EDIT}mkfifo pipe
mkdir -p sub && mkfifo sub/calc.py
python3 -c "import socket; socket.socket(socket.AF_UNIX).bind('sock')"
""",
        task_id=13,
    )
    started = time.monotonic()
    d = await _diff(mirror, worktree, timeout=20)
    assert time.monotonic() - started < 20
    assert {f.path for f in d.files} == {"calc.py"}
    assert any(s.startswith("pipe:") for s in d.skipped) and any(s.startswith("sock:") for s in d.skipped)


async def test_a_huge_file_and_a_hundred_thousand_files_are_capped_and_return_promptly(factory_as, mirror):
    worktree = _plant(
        factory_as,
        f"""{EDIT}truncate -s 900M big.bin
python3 -c "
import os
os.mkdir('many')
for i in range(100_000):
    open(f'many/{{i}}', 'w').close()
"
""",
        task_id=14,
        timeout=300,
    )
    started = time.monotonic()
    d = await _diff(mirror, worktree, timeout=60)
    took = time.monotonic() - started
    assert took < 30, took
    assert d.truncated and "Only part of the worktree" in d.note
    assert any(s.startswith("big.bin:") and "too large" in s for s in d.skipped)
    assert [f for f in d.files if f.path == "big.bin"][0].additions is None
    # the walk stopped before `zz/`: what it did not see is not called deleted
    assert "zz/keep.txt" not in {f.path for f in d.files}
    assert len(d.patch) < 2_000_000


async def test_a_git_file_naming_another_repository_is_never_read(factory_as, mirror):
    worktree = _plant(
        factory_as,
        f"""{EDIT}rm -rf .git && printf 'gitdir: {mirror[0]}\\n' > .git
""",
        task_id=15,
    )
    d = await _diff(mirror, worktree)
    assert [f.path for f in d.files] == ["calc.py"]
    assert "gitdir" not in d.patch


async def test_names_with_newlines_control_characters_and_forged_headers_render_inert(factory_as, mirror):
    worktree = _plant(
        factory_as,
        f"""{EDIT}python3 - <<'EOF'
names = ["new\\nline", "esc\\x1b[31mred", "cr\\rret", "bidi\\u202etxt.py", "..", "...", "a..b",
         "x\\ndiff --git a/evil b/evil\\n+++ b/evil\\n@@ -1 +1 @@\\n+forged"]
for n in names:
    try:
        open(n, "w").write("content\\n")
    except OSError:
        pass
EOF
""",
        task_id=16,
    )
    d = await _diff(mirror, worktree)
    controls = {chr(c) for c in range(32)} | {"\x7f", "\u202e"}
    for f in d.files:
        assert not (set(f.path) & controls), repr(f.path)
    headers = [line for line in d.patch.split("\n") if line.startswith("diff --git ")]
    assert len(headers) == len(d.files)  # no forged file
    assert not [line for line in d.patch.split("\n") if line.startswith("+++ b/evil")]
    assert "new\\nline" in {f.path for f in d.files} and "esc\\u001b[31mred" in {f.path for f in d.files}
    assert "..." in {f.path for f in d.files} and "a..b" in {f.path for f in d.files}
