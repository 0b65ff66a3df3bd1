"""Red team: programs named by PATH, against what an agent leaves in its checkout and home for later.

The change under attack: what Factory starts in a sandbox (the CLI, the bridge's socat and sleep, prlimit)
is named by absolute path, found on the worker's absolute PATH entries only, and the sandbox's PATH keeps
only absolute entries (factory/processes.py `absolute_path`, `which`). The agent owns its checkout (`.git`
included) and its home, and a later run of the task, or Factory's own git in the checkout, starts there.

Each test plants what an agent can write and asserts that nothing of it runs. A worker PATH with an empty
or relative entry (`PATH=.:$PATH`, a trailing `:`) is the precondition the change itself defends against
(test_redteam_spawn.py); the same precondition is tried against Factory's own git.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import textwrap
from pathlib import Path

import pytest

from tests.adversarial.test_git_walls import clones  # noqa: F401 (the fixture)

pytestmark = pytest.mark.adversarial

_RELATIVE = ".:bin::/usr/local/bin:/usr/bin:/bin"

# the next run: socat listens (the bridge ran to its end with the real one), and nothing planted ran
_LOOK = textwrap.dedent("""
    grep -c ':0C38 00000000:0000 0A' /proc/net/tcp
    ls PLANTED-* 2>/dev/null || echo none-ran
    echo "PATH=$PATH"
    echo "ENV=${ENV-unset} BASH_ENV=${BASH_ENV-unset} LD_PRELOAD=${LD_PRELOAD-unset}"
""")


def _assert_clean(nxt) -> None:
    assert nxt.rc == 0, nxt
    lines = nxt.stdout.split()
    assert lines[0] == "1", nxt  # the real socat listens on the bridge's port
    assert "none-ran" in lines and not any(w.startswith("PLANTED-") for w in lines), nxt
    path = next(w for w in lines if w.startswith("PATH=")).removeprefix("PATH=")
    assert all(d.startswith("/") for d in path.split(":")), nxt
    for writable in (nxt.home, nxt.worktree):
        assert writable not in path, nxt
    assert "ENV=unset" in lines and "BASH_ENV=unset" in lines and "LD_PRELOAD=unset" in lines, nxt


# --- attack 1: the bridge's shell words, planted as programs -----------------------------------------
# `[`, `read`, `echo`, `exit`, `exec`, `case` ... are dash builtins or keywords; were any looked up on PATH,
# a planted one in the checkout (with a `.`/`bin`/empty PATH entry) or home would run before the CLI.
_PLANT_WORDS = textwrap.dedent("""
    for d in "$PWD" "$PWD/bin" "$PWD/node_modules/.bin" "$HOME/bin" "$HOME/.local/bin"; do
      mkdir -p "$d"
      for p in '[' test echo read exec exit true false printf kill wait cat env sh dash socat sleep prlimit \
               grep awk sed bwrap nohup setsid timeout; do
        printf '#!/bin/sh\\necho planted > "%s/PLANTED-%s"\\nexec /usr/bin/false\\n' "$PWD" "$p" > "$d/$p"
        chmod +x "$d/$p"
      done
    done
    echo planted
""")


def test_no_shell_word_of_the_bridge_is_looked_up_on_a_path_into_the_checkout(factory_as):
    first = factory_as.sandbox(_PLANT_WORDS, task_id=101, worker_path=_RELATIVE)
    assert first.rc == 0 and "planted" in first.stdout, first
    _assert_clean(factory_as.sandbox(_LOOK, task_id=101, worker_path=_RELATIVE))


# --- attack 2: shell start-up files in the home and the checkout -------------------------------------
_PLANT_RC = textwrap.dedent("""
    for f in .profile .shrc .dashrc .bashrc .bash_profile .bash_login .kshrc .zshenv .zshrc .env .inputrc; do
      for d in "$HOME" "$PWD"; do
        printf 'echo planted > "%s/PLANTED-rc%s"\\n' "$PWD" "$f" > "$d/$f"
      done
    done
    mkdir -p "$HOME/.config/fish" && printf 'echo planted > "%s/PLANTED-fish"\\n' "$PWD" > "$HOME/.config/fish/config.fish"
    echo planted
""")


def test_shell_start_up_files_planted_in_the_home_or_checkout_are_not_read_by_the_next_start(factory_as):
    first = factory_as.sandbox(_PLANT_RC, task_id=102)
    assert first.rc == 0 and "planted" in first.stdout, first
    _assert_clean(factory_as.sandbox(_LOOK, task_id=102))


# --- attack 3: a fake /proc/net/tcp (and other look-alikes) in the checkout --------------------------
# the bridge reads `/proc/net/tcp` (absolute); a relative look-alike in its cwd must not make it exec the CLI
# before socat listens, and a FIFO or a huge file there must not hang or slow it
_PLANT_PROC = textwrap.dedent("""
    mkdir -p proc/net
    printf '  sl  local_address rem_address   st\\n   0: 0100007F:0C38 00000000:0000 0A\\n' > proc/net/tcp
    mkfifo egress.sock 2>/dev/null || true
    mkdir -p run/factory && : > run/factory/egress.sock
    echo planted
""")

_LOOK_AT_ONCE = "grep -c ':0C38 00000000:0000 0A' /proc/net/tcp; echo PATH=/usr/bin; echo none-ran ENV=unset BASH_ENV=unset LD_PRELOAD=unset\n"


def test_a_fake_proc_net_tcp_or_socket_in_the_checkout_does_not_fool_the_bridge(factory_as):
    first = factory_as.sandbox(_PLANT_PROC, task_id=103)
    assert first.rc == 0 and "planted" in first.stdout, first
    for _ in range(3):  # the agent's first command sees socat listening: the bridge waited for the real one
        nxt = factory_as.sandbox(_LOOK_AT_ONCE, task_id=103, timeout=20)
        assert nxt.rc == 0 and nxt.stdout.split()[0] == "1", nxt


# --- attack 4: a hostile worker environment (unit) ----------------------------------------------------
_HOSTILE_ENV = {
    "PATH": "bin:.:/usr/bin::node_modules/.bin:/bin:",
    "ENV": "/tmp/x", "BASH_ENV": "/tmp/x", "IFS": "/", "PS4": "$(touch /tmp/x)", "CDPATH": ".", "SHELLOPTS": "xtrace",
    "BASHOPTS": "extdebug", "BASH_FUNC_echo%%": "() { id; }", "LD_PRELOAD": "./x.so", "LD_LIBRARY_PATH": ".",
    "LD_AUDIT": "./x.so", "GCONV_PATH": ".", "LOCPATH": ".", "NODE_OPTIONS": "--require ./x.js", "NODE_PATH": ".",
    "PYTHONSTARTUP": "./x.py", "SOCAT_DEFAULT_LISTEN_IP": "0.0.0.0", "GIT_DIR": ".", "GIT_EXEC_PATH": ".",
    "PERL5OPT": "-Mx", "RUBYOPT": "-rx", "TMPDIR": ".", "XDG_CONFIG_HOME": ".", "ZDOTDIR": ".",
}  # fmt: skip


@pytest.mark.parametrize("proxied", [True, False])
def test_no_variable_a_shell_loader_or_socat_reads_reaches_the_sandbox(tmp_path, proxied):
    from factory.config import load_config
    from factory.sandbox.policy import sandbox_environment

    cfg = load_config(tmp_path / "none.yml", workspace_root=str(tmp_path / "ws"), data_dir=str(tmp_path / "d"))
    env = sandbox_environment(cfg, "/h", proxied, base=_HOSTILE_ENV, model_url="http://m", stand_in="s")
    leaked = sorted(k for k in _HOSTILE_ENV if k != "PATH" and k in env)
    assert leaked == [], leaked
    assert env["PATH"] == "/usr/bin:/bin", env["PATH"]


# --- attack 5: the worker's cwd holds look-alikes (unit) ----------------------------------------------
def test_every_program_of_the_sandbox_argv_is_absolute_whatever_the_worker_cwd_holds(tmp_path, monkeypatch):
    """bwrap, prlimit, /bin/sh, socat and sleep in the built argv: absolute, system paths, none from the cwd."""
    from factory.processes import which
    from factory.sandbox import limits
    from factory.sandbox.bwrap import SandboxSpec, build_command

    for d in (tmp_path, tmp_path / "bin"):
        d.mkdir(exist_ok=True)
        for name in ("bwrap", "socat", "sleep", "prlimit", "sh", "factory-redteam-cli"):
            (d / name).write_text("#!/bin/sh\n")
            (d / name).chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", _RELATIVE)
    assert which("factory-redteam-cli") is None  # the CLI is not found in the worker's cwd either
    monkeypatch.setattr(limits, "_v2_parent", lambda: None)
    monkeypatch.setattr(limits, "_v1_parents", dict)
    run = limits.prepare(limits.Limits(processes=64))
    try:
        wt, home = tmp_path / "w", tmp_path / "h"
        wt.mkdir()
        home.mkdir()
        sock = tmp_path / "p.sock"
        sock.touch()
        spec = SandboxSpec(worktree=wt, home=home, proxy_socket=sock, prefix=run.inner)
        argv = build_command(spec, ["/bin/sh", "-c", "true"])
    finally:
        run.close()
    sysdirs = ("/usr/", "/bin/", "/sbin/")
    assert argv[0].startswith(sysdirs), argv[0]
    rest = argv[argv.index("--") + 1 :]
    assert rest[0].startswith(sysdirs) and rest[0].endswith("prlimit"), rest
    inner = rest[rest.index("--") + 1 :]
    assert inner[:2] == ["/bin/sh", "-c"], inner
    script = inner[2]
    for word in ("socat", "sleep"):  # every mention of the program is by its absolute system path
        uses = re.findall(rf"(\S*){word}\b", script)
        assert uses and all(u.startswith(sysdirs) for u in uses), (word, uses)
    # the first word of each simple command of the script: a builtin, a keyword, or an absolute path
    firsts = {shlex.split(line.strip(), comments=True)[0] for line in script.splitlines() if line.strip()}
    allowed = {"listening()", "while", "case", "done", "return", "}", "n=0", "until", "n=$((n+1));", "if", "exec"}
    assert all(w in allowed or w.startswith("/") for w in firsts), firsts


# --- attack 6: Factory's own git, run in the checkout -------------------------------------------------
# factory/git/commands.py runs git with cwd = the checkout (TaskClone.git). Python resolves an empty or relative
# PATH entry in the child after its chdir, i.e. in the checkout: were git named by a bare name on the worker's
# PATH as is (as it was), a `git` the agent left there would run as the worker, with the push's token header in
# its environment. Now: git by absolute path, and its PATH (for its own children: ssh, hooks) absolute only.
_PLANTED_GIT = '#!/bin/sh\n/usr/bin/env > "{marker}"\nexec /usr/bin/git "$@"\n'


def _plant(where: Path, name: str, marker: Path, body: str = _PLANTED_GIT) -> None:
    where.mkdir(parents=True, exist_ok=True)
    p = where / name
    p.write_text(body.format(marker=marker))
    p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.mark.parametrize("worker_path", [":/usr/local/bin:/usr/bin:/bin", ".:/usr/bin:/bin", "bin:/usr/bin:/bin"])
async def test_factorys_git_in_the_checkout_does_not_run_a_git_planted_there(
    clones,  # noqa: F811
    tmp_path,
    monkeypatch,
    worker_path,
):
    _root, _mirror, (one, _two) = clones
    marker = tmp_path / "pwned-git"
    for d in (one.path, one.path / "bin"):
        _plant(d, "git", marker)
    (one.path / "work.txt").write_text("the agent's work\n")
    monkeypatch.setenv("PATH", worker_path)
    try:
        await one.secure("factory/task-1")
        await one.commit_all("factory: work")
        await one.push("factory/task-1", {"GIT_CONFIG_VALUE_0": "Authorization: Basic c2VjcmV0"})
    except Exception:  # noqa: BLE001 (what Factory's git then did is not what is tested)
        pass
    ran = marker.read_text() if marker.exists() else ""
    assert ran == "", f"a git planted in the checkout ran as the worker:\n{ran[:400]}"


# git (found at an absolute entry) runs GIT_SSH_COMMAND="ssh -o BatchMode=yes" through /bin/sh, cwd = the
# checkout, on PATH = its exec path + the worker's PATH: on a host with no ssh before a trailing `:`, the
# agent's `./ssh` is the transport of a push to an ssh:// remote
async def test_factorys_push_over_ssh_does_not_run_an_ssh_planted_in_the_checkout(clones, tmp_path, monkeypatch):  # noqa: F811
    _root, _mirror, (one, _two) = clones
    marker = tmp_path / "pwned-ssh"
    _plant(one.path, "ssh", marker, '#!/bin/sh\n/usr/bin/env > "{marker}"\nexit 1\n')
    only_git = tmp_path / "only-git"  # a host where git is installed and ssh is not
    only_git.mkdir()
    os.symlink("/usr/bin/git", only_git / "git")
    monkeypatch.setenv("PATH", f"{only_git}:")
    await one.secure("factory/task-1")
    try:
        await one.git("push", "--end-of-options", "ssh://git@example.invalid/x.git", "HEAD:refs/heads/x", timeout=20)
    except Exception:  # noqa: BLE001
        pass
    ran = marker.read_text() if marker.exists() else ""
    assert ran == "", f"an ssh planted in the checkout ran as the worker:\n{ran[:400]}"


# the control: with the absolute PATH Factory's own sandbox now insists on, the same plants do not run
async def test_factorys_git_with_an_absolute_worker_path_does_not_run_a_planted_git(clones, tmp_path, monkeypatch):  # noqa: F811
    _root, _mirror, (one, _two) = clones
    marker = tmp_path / "pwned-git"
    for d in (one.path, one.path / "bin"):
        _plant(d, "git", marker)
    _plant(one.path, "ssh", marker)
    (one.path / "work.txt").write_text("the agent's work\n")
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    await one.secure("factory/task-1")
    assert await one.commit_all("factory: work")
    await one.push("factory/task-1", {})
    assert not marker.exists(), marker.read_text()


# factory/git/commands.py `_dies_with_us` found setpriv with `shutil.which` on the raw worker PATH: a relative
# entry gave a relative result ("./setpriv", from the worker's cwd) then executed with cwd = the checkout, i.e.
# the agent's `./setpriv` (it needed a setpriv in the worker's cwd too). Now `which`: absolute entries only.
def test_the_remote_verbs_setpriv_prefix_is_absolute_whatever_the_worker_path(tmp_path, monkeypatch):
    from factory.git import commands

    (tmp_path / "setpriv").write_text("#!/bin/sh\n")
    (tmp_path / "setpriv").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", ".:/usr/bin:/bin")
    found = commands._dies_with_us.__wrapped__()
    assert not found or os.path.isabs(found[0]), found
