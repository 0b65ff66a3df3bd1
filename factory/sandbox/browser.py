"""Chromium for proof of work's browser checks, contained like an agent.

Playwright starts the browser itself (the executable it is given, with its own argv, talking over
`--remote-debugging-pipe` on fds 3 and 4), so the wall is a wrapper executable in a Factory-owned
temp dir that execs: setpriv (Factory's sandbox uid when Factory is root, no groups, no
capabilities) → bwrap (new user/pid/ipc/uts/cgroup namespaces, --cap-drop ALL, Factory's seccomp
filter, read-only /usr, only the /etc files the agents get, its own /tmp and home as tmpfs: no view
of the data dir, workspaces, config or Factory's home) → chromium --no-sandbox (Chromium's own
sandbox needs user namespaces, which the filter denies; bwrap is the sandbox). bwrap and setpriv
keep inherited fds, so the CDP pipe on fds 3 and 4 reaches Chromium (tests/adversarial/
test_redteam_checks.py checks that a launch works at all).

What holds for the network: the preview is reachable only on its Docker network from the host's
namespace, so Chromium shares the host's network namespace; the network wall is Playwright's
per-context route (only the preview's origin) plus Chromium flags closing WebRTC's non-proxied UDP.
The profile, downloads and Playwright's artifact paths all land in the sandbox's tmpfs, which dies
with it. What this trusts: nothing the page does; the wrapper is written by Factory, 0700, in a
0700 dir of its own.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path

from factory.processes import which
from factory.sandbox.bwrap import _ETC, _SYSTEM_LINKS
from factory.sandbox.seccomp import program

CHROMIUM = "/usr/bin/chromium"
TMP_MB = 512
# Chromium flags for a page that is the agent's: no GPU, no extensions, no sync or background calls
# home, WebRTC only through a proxy (there is none: no UDP to loopback), a capped JS heap
ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--js-flags=--max-old-space-size=512",
)


def _bwrap_argv(seccomp_fd: int) -> list[str]:
    argv = [which("bwrap") or "bwrap", "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    argv += ["--unshare-cgroup-try"]
    argv += ["--share-net", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--disable-userns"]
    argv += ["--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev"]
    for link in _SYSTEM_LINKS:
        p = Path(link)
        if p.is_symlink():
            argv += ["--symlink", os.readlink(p), link]
        elif p.is_dir():
            argv += ["--ro-bind", link, link]
    argv += ["--dir", "/etc"]
    for name in (*_ETC, "fonts", "chromium", "chromium.d"):  # Debian's launcher reads these
        if (Path("/etc") / name).exists():
            argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    size = str(TMP_MB * 1024 * 1024)
    for d in ("/tmp", "/home/browser", "/var/tmp", "/run"):
        argv += ["--size", size, "--tmpfs", d]
    argv += ["--setenv", "HOME", "/home/browser", "--setenv", "TMPDIR", "/tmp", "--chdir", "/tmp"]
    argv += ["--seccomp", str(seccomp_fd)]
    return argv


class BrowserJail:
    """A wrapper executable for Playwright's `executable_path`; `close()` removes it."""

    SECCOMP_FD = 9  # the filter reaches bwrap on this fd via the redirect (dash: one digit; 3, 4 are CDP)

    def __init__(self, uid: int, gid: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="factory-browser-"))
        (self.dir / "seccomp.bpf").write_bytes(program())
        drop = ""
        if os.geteuid() == 0:  # as root the browser runs as the sandbox uid; else as Factory's own user
            drop = f"{which('setpriv') or 'setpriv'} --reuid={uid} --regid={gid} --clear-groups --inh-caps=-all --bounding-set=-all -- "
        bwrap = shlex.join(_bwrap_argv(self.SECCOMP_FD))
        script = (
            "#!/bin/sh\n"
            "# written by Factory (factory/sandbox/browser.py): Playwright's Chromium inside bwrap\n"
            f'exec {drop}{bwrap} -- {CHROMIUM} {shlex.join(ARGS)} "$@" '
            f"{self.SECCOMP_FD}<{shlex.quote(str(self.dir / 'seccomp.bpf'))}\n"
        )
        self.executable = self.dir / "chromium"
        self.executable.write_text(script)
        self.executable.chmod(0o700)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
