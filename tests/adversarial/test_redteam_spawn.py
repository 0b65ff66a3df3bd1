"""Red team: the sandbox's start (its egress bridge, factory/sandbox/bwrap.py) against what an earlier run of
the same task left in its checkout and home. Runs of one task share both, so a first run plants, the next
one starts. Through the shared harness (conftest.py), as root and as an unprivileged user.

That every process of a run joins the run's cgroups, whatever it does at once (a new session, a double fork,
writes to cgroup files), is test_cpu_walls.py's
`test_every_process_of_the_run_socat_and_bwrap_s_init_included_is_in_the_run_s_cgroup`.
"""

from __future__ import annotations

import textwrap

import pytest

pytestmark = pytest.mark.adversarial

_PLANT = textwrap.dedent("""
    for d in "$HOME/bin" "$HOME/.local/bin" "$PWD/bin" "$PWD/node_modules/.bin"; do
      mkdir -p "$d"
      for p in socat sh grep sleep; do
        printf '#!/bin/sh\\necho planted > "%s/PLANTED-%s"\\nexec /usr/bin/%s "$@"\\n' "$PWD" "$p" "$p" > "$d/$p"
        chmod +x "$d/$p"
      done
    done
    echo planted
""")

# the next run: the bridge has started socat and seen it listen before this runs
_LOOK = textwrap.dedent("""
    grep -c ':0C38 00000000:0000 0A' /proc/net/tcp
    ls PLANTED-* 2>/dev/null || echo none-ran
    echo "PATH=$PATH"
""")


def test_programs_planted_in_the_checkout_or_home_are_not_what_the_next_runs_bridge_starts(factory_as):
    first = factory_as.sandbox(_PLANT, task_id=7)
    assert first.rc == 0 and "planted" in first.stdout, first
    nxt = factory_as.sandbox(_LOOK, task_id=7)
    assert nxt.rc == 0, nxt
    lines = nxt.stdout.split()
    assert lines[0] == "1", nxt  # the real socat listens on the bridge's port
    assert "none-ran" in lines and not any(w.startswith("PLANTED-") for w in lines), nxt
    path = next(w for w in lines if w.startswith("PATH="))
    for writable in (nxt.home, nxt.worktree):  # no directory the agent writes is on the sandbox's PATH
        assert writable not in path, nxt


# A worker whose PATH has an empty or relative entry ahead of /usr/bin (a unit or shell profile that set
# `PATH=.:$PATH`, `PATH=$PATH:` or `PATH=node_modules/.bin:$PATH`). Such an entry names the cwd, or a directory
# under it, and everything the sandbox starts starts in the checkout: the bridge's socat and sleep, the
# `prlimit` in front of the agent when no pids cgroup caps the run, and the agent's CLI itself.
_RELATIVE_PATHS = [
    ":/usr/local/bin:/usr/bin:/bin",
    ".:/usr/local/bin:/usr/bin:/bin",
    "bin:/usr/local/bin:/usr/bin:/bin",
    "node_modules/.bin:/usr/local/bin:/usr/bin:/bin",
    "/usr/local/bin::/usr/bin:/bin",
]

_PLANT_IN_CHECKOUT = textwrap.dedent("""
    for d in "$PWD" "$PWD/bin" "$PWD/node_modules/.bin"; do
      mkdir -p "$d"
      for p in socat sh grep sleep prlimit; do
        printf '#!/bin/sh\\necho planted > "%s/PLANTED-%s"\\nexec /usr/bin/%s "$@"\\n' "$PWD" "$p" "$p" > "$d/$p"
        chmod +x "$d/$p"
      done
    done
    echo planted
""")


@pytest.mark.parametrize("worker_path", _RELATIVE_PATHS)
def test_a_worker_path_with_an_empty_or_relative_entry_does_not_let_a_program_planted_in_the_checkout_run(
    factory_as, worker_path
):
    task = 20 + _RELATIVE_PATHS.index(worker_path)
    first = factory_as.sandbox(_PLANT_IN_CHECKOUT, task_id=task, worker_path=worker_path)
    assert first.rc == 0 and "planted" in first.stdout, first
    nxt = factory_as.sandbox(_LOOK, task_id=task, worker_path=worker_path)
    assert nxt.rc == 0, nxt
    lines = nxt.stdout.split()
    assert lines[0] == "1", nxt  # the bridge's socat listens
    assert "none-ran" in lines and not any(w.startswith("PLANTED-") for w in lines), nxt
    path = next(w for w in lines if w.startswith("PATH=")).removeprefix("PATH=")
    assert all(d.startswith("/") for d in path.split(":")), nxt  # the run's own PATH names no cwd either


# the next run's bridge would start this socat, which never listens, then this sleep, which never returns
_PLANT_A_HANG = textwrap.dedent("""
    for d in "$PWD" "$PWD/bin"; do
      mkdir -p "$d"
      printf '#!/bin/sh\\nexit 0\\n' > "$d/socat"
      printf '#!/bin/sh\\nexec /usr/bin/sleep 100000\\n' > "$d/sleep"
      chmod +x "$d/socat" "$d/sleep"
    done
    echo planted
""")


@pytest.mark.parametrize("worker_path", [":/usr/bin:/bin", "bin:/usr/bin:/bin"])
def test_a_socat_and_sleep_planted_in_the_checkout_cannot_hang_or_stop_the_next_start(factory_as, worker_path):
    task = 40 + len(worker_path)
    first = factory_as.sandbox(_PLANT_A_HANG, task_id=task, worker_path=worker_path)
    assert first.rc == 0 and "planted" in first.stdout, first
    nxt = factory_as.sandbox("echo started", task_id=task, worker_path=worker_path, timeout=30)
    assert (nxt.rc, nxt.stdout.strip()) == (0, "started"), nxt
