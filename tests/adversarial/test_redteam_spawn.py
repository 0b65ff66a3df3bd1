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
