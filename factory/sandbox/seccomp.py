"""The seccomp filter every sandboxed process runs under, as classic BPF assembled here (no libseccomp).

bwrap loads it (`--seccomp FD`) right before it execs the sandbox's first program, so it holds for
every process an agent starts and cannot be removed (filters only ever add up). What it denies, and
why, is the kernel surface a process without capabilities still reaches and should not need:

- new namespaces of any kind (`clone`/`unshare` with a `CLONE_NEW*` flag, `setns`): a nested user
  namespace gives back every capability inside it, which is how most container escapes start.
  `clone3` passes its flags in memory a filter cannot read, so it answers ENOSYS and libc falls back
  to `clone`, whose flags are checked;
- mounts of every API (`mount`, `umount2`, `pivot_root`, the new mount API, `mount_setattr`), `chroot`;
- other processes' memory and handles (`ptrace`, `process_vm_*`, `pidfd_getfd`, `process_madvise`,
  `kcmp`), file handles that skip path checks (`open_by_handle_at`, `name_to_handle_at`);
- the kernel itself: modules, `bpf`, `perf_event_open`, `kexec_*`, `reboot`, swap, `acct`, quotas,
  the kernel log, clocks, `iopl`/`ioperm`/`modify_ldt`, keyrings, `userfaultfd` (a race tool),
  `io_uring` (its operations are not seen by seccomp at all);
- terminal injection (`ioctl` TIOCSTI, TIOCLINUX) and personalities other than the ones programs use
  (e.g. no ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC);
- sockets of a family a network namespace does not hold (only AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK
  are made; AF_VSOCK, a VM's line to its host, is shared with the host), `memfd_secret`, `fanotify_init`.

Denied calls fail with EPERM, so programs see an ordinary error. Only x86_64 and aarch64 are known;
any other architecture (notably the 32-bit x86 entry on an x86_64 kernel, `int 0x80`, whose numbers
differ) kills the process, and on x86_64 the x32 numbers (bit 30) are denied.
"""

from __future__ import annotations

import errno
import functools
import struct
import sys

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35
_JSET = 0x45
_JA = 0x05
_RET = 0x06

_NR, _ARCH, _ARG0, _ARG1 = 0, 4, 16, 24  # offsets in struct seccomp_data (the low half of each argument)

_NS_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_CLONE_NEWTIME = 0x80  # only for unshare: in clone's flags these low bits are the exit signal
_X32_BIT = 0x40000000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # linux, linux32, uname26 (+32), query

# name: (x86_64, aarch64); None where the call does not exist on that architecture
DENIED: dict[str, tuple[int | None, int | None]] = {
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
    "setns": (308, 268), "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "pidfd_getfd": (438, 438), "process_madvise": (440, 440), "kcmp": (312, 272),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106),
    "bpf": (321, 280), "perf_event_open": (298, 241), "kexec_load": (246, 104), "kexec_file_load": (320, 294),
    "reboot": (169, 142), "swapon": (167, 224), "swapoff": (168, 225), "acct": (163, 89),
    "quotactl": (179, 60), "quotactl_fd": (443, 443), "syslog": (103, 116), "vhangup": (153, 58),
    "settimeofday": (164, 170), "clock_settime": (227, 112), "clock_adjtime": (305, 266), "adjtimex": (159, 171),
    "userfaultfd": (323, 282), "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "lookup_dcookie": (212, 18),
    "iopl": (172, None), "ioperm": (173, None), "modify_ldt": (154, None), "uselib": (134, None),
    "_sysctl": (156, None), "memfd_secret": (447, 447), "fanotify_init": (300, 262),
    "lsm_set_self_attr": (460, 460),
}  # fmt: skip
# calls checked by argument: (x86_64, aarch64)
CLONE, CLONE3, UNSHARE, IOCTL, PERSONALITY = (56, 220), (435, 435), (272, 97), (16, 29), (135, 92)
SOCKET, SOCKETPAIR = (41, 198), (53, 199)
# AF_UNIX, AF_INET, AF_INET6, AF_NETLINK: the families a network namespace holds. AF_VSOCK (a VM's line to its
# host) is not namespaced: from a sandbox with its own network it reached the hypervisor past the egress proxy
SOCKET_FAMILIES = (1, 2, 10, 16)


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _ret(value: int) -> bytes:
    return _ins(_RET, value)


def _eperm() -> bytes:
    return _ret(_RET_ERRNO | errno.EPERM)


def _table(arch: int) -> list[bytes]:
    """The checks for one architecture, the syscall number in A on entry; ends allowing what is left."""
    i = 0 if arch == AUDIT_ARCH_X86_64 else 1
    out = [_ins(_LD_ABS, _NR)]
    if arch == AUDIT_ARCH_X86_64:
        out += [_ins(_JGE, _X32_BIT, 0, 1), _eperm()]
    for numbers in DENIED.values():
        if numbers[i] is not None:
            out += [_ins(_JEQ, numbers[i], 0, 1), _eperm()]  # type: ignore[arg-type]
    out += [_ins(_JEQ, CLONE3[i], 0, 1), _ret(_RET_ERRNO | errno.ENOSYS)]
    for nr, mask in ((CLONE[i], _NS_FLAGS), (UNSHARE[i], _NS_FLAGS | _CLONE_NEWTIME)):
        # nr? load flags; any namespace flag -> EPERM, else allow (A no longer holds nr)
        out += [_ins(_JEQ, nr, 0, 4), _ins(_LD_ABS, _ARG0), _ins(_JSET, mask, 0, 1), _eperm(), _ret(_RET_ALLOW)]
    # the ioctl request is an unsigned int to the kernel: its low half is what it acts on
    out += [_ins(_JEQ, IOCTL[i], 0, 5), _ins(_LD_ABS, _ARG1)]
    out += [_ins(_JEQ, TIOCSTI, 2, 0), _ins(_JEQ, TIOCLINUX, 1, 0), _ret(_RET_ALLOW), _eperm()]
    n = len(_PERSONALITIES)
    out += [_ins(_JEQ, PERSONALITY[i], 0, n + 3), _ins(_LD_ABS, _ARG0)]
    out += [_ins(_JEQ, p, n - j, 0) for j, p in enumerate(_PERSONALITIES)]
    out += [_eperm(), _ret(_RET_ALLOW)]
    f = len(SOCKET_FAMILIES)
    for nr in (SOCKET[i], SOCKETPAIR[i]):  # another family: "not supported", as on a kernel without it
        out += [_ins(_JEQ, nr, 0, f + 3), _ins(_LD_ABS, _ARG0)]
        out += [_ins(_JEQ, fam, f - j, 0) for j, fam in enumerate(SOCKET_FAMILIES)]
        out += [_ret(_RET_ERRNO | errno.EAFNOSUPPORT), _ret(_RET_ALLOW)]
    out.append(_ret(_RET_ALLOW))
    return out


@functools.cache
def program() -> bytes:
    """The filter as `struct sock_filter[]` bytes, what bwrap's `--seccomp FD` reads; built once per process."""
    if sys.byteorder != "little":
        raise RuntimeError("the sandbox's seccomp filter is written for little-endian x86_64 and aarch64")
    x86, arm = _table(AUDIT_ARCH_X86_64), _table(AUDIT_ARCH_AARCH64)
    head = [
        _ins(_LD_ABS, _ARCH),
        _ins(_JEQ, AUDIT_ARCH_X86_64, 0, 1),
        _ins(_JA, 3),  # to x86 (skips the 3 below)
        _ins(_JEQ, AUDIT_ARCH_AARCH64, 0, 1),
        _ins(_JA, 1 + len(x86)),  # to aarch64
        _ret(_RET_KILL_PROCESS),
    ]
    code = head + x86 + arm
    if len(code) > 4096:  # BPF_MAXINSNS
        raise RuntimeError("seccomp program too long")
    return b"".join(code)
