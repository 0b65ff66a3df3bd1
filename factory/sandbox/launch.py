"""How the worker starts bwrap for one run: as whom, in which cgroups, with the seccomp filter.

- Factory run as a normal user: bwrap runs as that user and makes a user namespace of its own.
- Factory run as root: the sandbox must not hold root's uid (files root owns, root-only rlimit
  exemptions), so the child drops to `sandbox.uid`/`sandbox.gid` before it execs bwrap. Then the
  paths it binds writable are chowned to that uid before the run (`chown_tree`), and every host path
  bwrap binds is first bind-mounted, still as root, into a private mount namespace of the child at
  `STAGE/<n>`: the sandbox uid reaches them there whatever the modes of their parent directories
  (a workspace under a 0700 directory), and nothing outside the child sees those mounts.

What it trusts: the paths Factory computed (worktree, home, the mirror's objects, its own sockets),
never a path an agent wrote; `chown_tree` never follows a link and never chowns a file that has
other names (a hard link an agent made to a file elsewhere keeps its owner).
"""

from __future__ import annotations

import ctypes
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from factory.config_sections import SandboxConfig
from factory.processes import die_with_parent, which
from factory.sandbox.bwrap import SandboxSpec, _dedupe, host_sources
from factory.sandbox.limits import Limits, RunLimits, prepare
from factory.sandbox.seccomp import program

STAGE = Path("/run/factory-stage")
_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_RESTRICT_SELF = 444, 446  # the same on x86_64 and aarch64
_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1
_PR_SET_NO_NEW_PRIVS = 38


class _LandlockRuleset(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]  # fmt: skip


# no file or network rule, only a scope: a process of the run connects to no abstract unix socket made outside
# the run (Linux 6.12, Landlock ABI 6). With its own network namespace the run sees none anyway; with
# `sandbox.network: host` it shares the host's (X11, D-Bus, container shims, other tasks' runs)
_SCOPE = _LandlockRuleset(0, 0, _LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET)


def scope_abstract_sockets() -> bool:
    """In the child before bwrap: a Landlock domain that keeps the run from the abstract unix sockets made
    outside it. False where the kernel has no such scope (before 6.12, or Landlock off): then only a network
    namespace of the run's own holds them back."""
    fd = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(_SCOPE), ctypes.sizeof(_SCOPE), 0)
    if fd < 0:
        return False
    try:
        # required to restrict without CAP_SYS_ADMIN, and bwrap sets it for its seccomp filter anyway
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if _libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, fd, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(fd)
    return True


def _mount(src: bytes | None, dst: bytes, fstype: bytes | None, flags: int, data: bytes | None = None) -> None:
    if _libc.mount(src, dst, fstype, ctypes.c_ulong(flags), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {dst.decode()}: {os.strerror(err)}")


def seccomp_fd() -> int:
    """A fresh memfd holding the filter (bwrap reads it to the end, so one per start)."""
    fd = os.memfd_create("factory-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@dataclass
class Launch:
    """What `spawn` needs beyond the argv: the child's set-up and the fds bwrap reads."""

    limits: RunLimits
    seccomp: int
    uid: int | None = None
    gid: int | None = None
    staged: list[tuple[Path, Path]] = field(default_factory=list)
    """(host path, STAGE path) pairs mounted in the child's own mount namespace (root only)."""
    scope: bool = True
    """Set the Landlock scope (`scope_abstract_sockets`); not for a setuid bwrap, which no_new_privs would stop."""

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.seccomp,)

    def preexec(self) -> None:
        """In the child between fork and exec (so: os calls only, on values made beforehand)."""
        die_with_parent()
        if self.staged:
            if _libc.unshare(_CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
            _mount(None, b"/", None, _MS_REC | _MS_PRIVATE)
            _mount(b"tmpfs", bytes(STAGE), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=0755")
            for host, staged in self.staged:
                if host.is_dir():
                    os.mkdir(staged, 0o755)
                else:
                    os.close(os.open(staged, os.O_CREAT | os.O_WRONLY, 0o644))
                _mount(bytes(host), bytes(staged), None, _MS_BIND | _MS_REC)
        self.limits.apply_in_child()
        if self.uid is not None and self.gid is not None:
            os.setgroups([])
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)
            die_with_parent()  # a change of uid or gid clears the parent-death signal: set it again
        if self.scope:
            scope_abstract_sockets()

    def close(self) -> None:
        os.close(self.seccomp)
        self.limits.close()


class SandboxArgv(list[str]):
    """The bwrap argv, carrying the `Launch` that `spawn` must start it with."""

    launch: Launch


def _setuid_bwrap() -> bool:
    found = which("bwrap")
    return found is not None and bool(os.stat(found).st_mode & stat.S_ISUID)


def drops_to(uid: int, gid: int) -> tuple[int, int] | None:
    """(uid, gid) the sandbox runs as when Factory is root, else None (it runs as Factory's user)."""
    return (uid, gid) if os.geteuid() == 0 else None


def ensure_stage() -> None:
    """STAGE exists as root's own directory (not a link someone else planted)."""
    STAGE.mkdir(mode=0o755, parents=True, exist_ok=True)
    st = os.lstat(STAGE)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        raise RuntimeError(f"{STAGE} is not a directory owned by root")


def chown_tree(top: Path, uid: int, gid: int) -> None:
    """Give `top` and everything under it to uid:gid, never following a link (see the module docstring)."""
    top_st = os.lstat(top)
    if not stat.S_ISDIR(top_st.st_mode):
        raise RuntimeError(f"{top} is not a directory")
    if (top_st.st_uid, top_st.st_gid) != (uid, gid):
        os.chown(top, uid, gid, follow_symlinks=False)
    os.chmod(top, 0o700, follow_symlinks=False)  # other local users stay out of the task's files
    for _root, dirs, files, dirfd in os.fwalk(top, follow_symlinks=False):
        for name in dirs + files:
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if (st.st_uid, st.st_gid) == (uid, gid):
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    continue
                os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue


def prepare_launch(spec: SandboxSpec, sandbox: SandboxConfig, run_id: str) -> Launch:
    """One run's `Launch`: its limits and seccomp fd and, as root, its uid, chowned trees and staged
    paths. Fills `spec` (seccomp fd, prefix, sources) to match; `close()` it when the run ends."""
    run = prepare(Limits(**sandbox.limits.model_dump()), run_id)
    launch = Launch(limits=run, seccomp=seccomp_fd(), scope=not _setuid_bwrap())
    spec.seccomp_fd, spec.prefix = launch.seccomp, run.inner
    spec.tmpfs_mb = sandbox.limits.memory_mb  # the run's RAM: its tmpfs mounts are RAM too
    try:
        target = drops_to(sandbox.uid, sandbox.gid)
        if target is not None:
            launch.uid, launch.gid = target
            for tree in _dedupe([spec.worktree, spec.home, *spec.writable]):
                chown_tree(tree, *target)
            for sock in [spec.proxy_socket, *(h for h, _ in spec.binds)]:
                if sock is not None:  # Factory's own sockets, which the sandbox uid must connect to
                    os.chown(sock, *target)
            ensure_stage()
            for n, host in enumerate(host_sources(spec)):
                spec.sources[host] = STAGE / str(n)
            launch.staged = list(spec.sources.items())
    except BaseException:
        launch.close()
        raise
    return launch
