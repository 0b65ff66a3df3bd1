"""The bubblewrap command line for one agent run.

What the sandbox holds, and why each piece is there (docs/sandbox.md has the long form):

- the system read-only: `/usr` (and the merged-usr links `/bin`, `/lib*`, `/sbin`), and of `/etc`
  only what programs need to run, resolve names and check certificates; never `/etc/ssl/private`,
  `/root`, `/home`, the Docker socket, the data dir or `workspace_root` as a whole;
- writable: the task's worktree and its own CLI home (HOME and CLAUDE_CONFIG_DIR), each at its
  host path so the CLI's session files name the same cwd inside and out and `--resume` finds them;
- read-only at their host paths: the object stores the worktree's git borrows from (alternates),
  and the docker toolkit under `/opt/factory/toolkit`;
- its own user, PID, IPC and UTS namespaces, a private `/proc`, `/dev`, `/tmp` and `/run`, no
  capabilities and an empty bounding set (`--cap-drop ALL`, also when Factory is root: then it runs
  as `sandbox.uid`, see `launch`), no further user namespaces (`--disable-userns`), the seccomp
  filter of `seccomp`, and, with the egress proxy, its own network namespace whose only way out is
  socat bridging a loopback port to the run's proxy socket.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from factory.processes import which

INSTALL_HINT = "install bubblewrap and socat (Debian/Ubuntu: `apt-get install bubblewrap socat`)"
PROXY_PORT = 3128
"""The loopback port inside the sandbox where socat forwards to Factory's egress proxy."""
PROXY_SOCKET = "/run/factory/egress.sock"
TOOLKIT_ROOT = "/opt/factory/toolkit"
RUN_MB = 64
"""The sandbox's `/run`: Factory's sockets are bound into it; nothing large belongs there."""

_SYSTEM_LINKS = ("/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin")
_ETC = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "ssl/certs",
    "ssl/openssl.cnf",
    "pki",
    "resolv.conf",
    "hosts",
    "host.conf",
    "gai.conf",
    "nsswitch.conf",
    "passwd",
    "group",
    "localtime",
    "timezone",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "gitconfig",
    "npmrc",
    "pip.conf",
    "mime.types",
    "os-release",
    "debian_version",
    "protocols",
    "services",
)

# socat must listen before the CLI makes its first request; /proc/net/tcp (this namespace's) lists the
# port in state 0A (LISTEN) once it does. Read with the shell's builtins: socat listens ~4 ms after its
# start, and a `grep` and a `sleep 0.005` forked per look cost ~6 ms of every run's start
# (bench/SANDBOX.md). Looks are back to back for the first 300, 5 ms apart for 100 more, then 0.1 s apart:
# ~5 s in all (each sleep's fork costs more than 5 ms on a busy host, so 1000 short ones took 13 s). socat
# and sleep are named by absolute path: the script's cwd is the checkout, where an earlier run may have left either
_BRIDGE = (
    "{socat} TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:{sock} &\n"
    "listening() {{\n"
    "  while read -r _ a r s _; do\n"
    "    case \"$a $r $s\" in *':{hexport} 00000000:0000 0A') return 0 ;; esac\n"
    "  done </proc/net/tcp\n"
    "  return 1\n"
    "}}\n"
    "n=0\n"
    "until listening; do\n"
    "  n=$((n+1)); if [ $n -gt 440 ]; then echo 'factory sandbox: the egress bridge did not start' >&2; exit 70; fi\n"
    "  if [ $n -gt 400 ]; then {sleep} 0.1; elif [ $n -gt 300 ]; then {sleep} 0.005; fi\n"
    "done\n"
    'exec "$@"\n'
)


class SandboxUnavailable(RuntimeError):
    """bubblewrap (or socat, for the proxied network) is not installed."""


def bridge_script(sock: str, socat: str | None = None) -> str:
    """The shell script that starts socat bridging the sandbox's loopback proxy port to `sock`, then the agent."""
    socat = socat or which("socat")
    sleep = which("sleep")
    if socat is None or sleep is None:
        raise SandboxUnavailable(f"socat is not installed: {INSTALL_HINT}")
    q = shlex.quote
    return _BRIDGE.format(socat=q(socat), sleep=q(sleep), port=PROXY_PORT, sock=sock, hexport=f"{PROXY_PORT:04X}")


def missing_tools(proxied: bool) -> list[str]:
    """The sandbox's programs not on PATH (`bwrap`, and `socat` when the network is proxied)."""
    tools = ["bwrap", "socat"] if proxied else ["bwrap"]
    return [t for t in tools if which(t) is None]


@dataclass
class SandboxSpec:
    """One run's sandbox: what is writable, what is readable, and how it reaches out."""

    worktree: Path
    home: Path
    read_only: list[Path] = field(default_factory=list)
    """Extra paths bound read-only at their host path (the git object stores the worktree borrows)."""
    writable: list[Path] = field(default_factory=list)
    """Extra paths bound writable at their host path (the worktree's git dir, when it is elsewhere)."""
    binds: list[tuple[Path, str]] = field(default_factory=list)
    """(host path, sandbox path) pairs bound writable, e.g. a service socket the run may use."""
    toolkit: Path | None = None
    proxy_socket: Path | None = None
    """The run's egress proxy socket; None shares the host's network (`sandbox.network: host`)."""
    seccomp_fd: int | None = None
    """An fd the child inherits holding `seccomp.program()`."""
    sources: dict[Path, Path] = field(default_factory=dict)
    """Where bwrap finds a host path it binds, when not at that path (`launch.STAGE` as root)."""
    prefix: list[str] = field(default_factory=list)
    """Run in front of the first program inside (`prlimit` when no pids cgroup caps the run)."""
    tmpfs_mb: int | None = None
    """The size cap of each of the sandbox's own tmpfs mounts (`/tmp`, `/var/tmp`, `/dev/shm`; `/run` gets
    `RUN_MB`): they are RAM, and with no memory cgroup nothing else charges them to the run."""
    read_only_worktree: bool = False
    """The worktree is remounted read-only after its bind (a reviewer on a backend with no tool list)."""


@functools.cache
def disables_userns() -> bool:
    """bwrap ≥ 0.8 has `--disable-userns`; older ones rely on the seccomp filter alone for that."""
    bwrap = which("bwrap")
    if bwrap is None:
        return False
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    m = re.search(r"(\d+)\.(\d+)", out)
    return m is not None and (int(m[1]), int(m[2])) >= (0, 8)


def _exists(p: Path) -> bool:
    return p.exists() or p.is_symlink()


def build_command(spec: SandboxSpec, inner: Sequence[str], etc_root: Path = Path("/")) -> list[str]:
    """The `bwrap ...` argv that runs `inner` inside the sandbox with cwd at the worktree.

    The environment is not on this command line: the caller gives bwrap an allow-listed
    environment, which it passes on, so no secret sits in an argv.
    """
    bwrap = which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}")
    # no --new-session: the caller already starts bwrap in a session of its own with no terminal (so
    # no TIOCSTI), and staying in bwrap's process group lets its SIGTERM reach the CLI itself
    cmd = [bwrap, "--die-with-parent", "--unshare-user", "--cap-drop", "ALL"]
    if disables_userns():
        cmd.append("--disable-userns")
    if spec.seccomp_fd is not None:
        cmd += ["--seccomp", str(spec.seccomp_fd)]
    cmd += ["--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    cmd += ["--unshare-cgroup-try", "--hostname", "factory-sandbox"]
    if spec.proxy_socket is not None:
        cmd.append("--unshare-net")
    cmd += ["--ro-bind", "/usr", "/usr"]
    for link in _SYSTEM_LINKS:
        p = Path(link)
        if p.is_symlink():
            cmd += ["--symlink", str(p.readlink()), link]
        elif p.is_dir():
            cmd += ["--ro-bind", link, link]
    for name in _ETC:
        p = etc_root / "etc" / name
        if _exists(p):
            cmd += ["--ro-bind", str(p), f"/etc/{name}"]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    # unsized, each tmpfs could take half the host's RAM (measured: 4 x 384 MiB past a 128 MiB run as a
    # normal user); /dev/shm is bwrap's /dev, so it gets a sized tmpfs of its own
    for mount in ("/tmp", "/var/tmp", "/dev/shm", "/run"):
        size = RUN_MB if mount == "/run" else spec.tmpfs_mb
        cmd += [*(["--size", str(size * 1024 * 1024)] if size else []), "--tmpfs", mount]
    # the host paths below may sit under /tmp (tests) or /run: bind them after those tmpfs mounts
    def src(p: Path) -> str:
        return str(spec.sources.get(Path(p), p))

    for p in _dedupe(spec.read_only):
        if p.exists():
            cmd += ["--ro-bind", src(p), str(p)]
    for p in _dedupe([spec.worktree, spec.home, *spec.writable]):
        cmd += ["--bind", src(p), str(p)]
    if spec.read_only_worktree:  # after the writable bind, so nothing below the worktree stays writable
        cmd += ["--remount-ro", str(spec.worktree)]
    for host, inside in spec.binds:
        cmd += ["--bind", src(host), inside]
    if spec.toolkit is not None and spec.toolkit.is_dir():
        cmd += ["--ro-bind", src(spec.toolkit), f"{TOOLKIT_ROOT}/{spec.toolkit.name}"]
    cmd += ["--chdir", str(spec.worktree)]
    if spec.proxy_socket is None:
        return [*cmd, "--", *spec.prefix, *inner]
    cmd += ["--ro-bind", src(spec.proxy_socket), PROXY_SOCKET]
    script = bridge_script(PROXY_SOCKET)
    return [*cmd, "--", *spec.prefix, "/bin/sh", "-c", script, "factory-sandbox", *inner]


def host_sources(spec: SandboxSpec) -> list[Path]:
    """Every host path outside the system that `build_command` binds for `spec`."""
    paths = [p for p in _dedupe(spec.read_only) if p.exists()]
    paths += _dedupe([spec.worktree, spec.home, *spec.writable]) + [h for h, _ in spec.binds]
    if spec.toolkit is not None and spec.toolkit.is_dir():
        paths.append(spec.toolkit)
    if spec.proxy_socket is not None:
        paths.append(spec.proxy_socket)
    return _dedupe(paths)


def _dedupe(paths: Iterable[Path]) -> list[Path]:
    seen: list[Path] = []
    for p in paths:
        p = Path(p)
        if p not in seen:
            seen.append(p)
    return seen
