"""Red team: escape attempts from inside a real sandbox that the other attack files do not try.

Each runs for real through the shared harness (conftest.py), with Factory as root and as an unprivileged
user, and asserts that the wall holds. A wall found not to hold keeps its assertion and is marked
`xfail(strict=True, reason="HOLE: ...")`, so fixing it turns the test into an XPASS that must be un-marked.

Angles (none repeated from test_sandbox_privileges.py, test_redteam_sandbox.py, test_cpu_walls.py,
test_redteam_spawn.py, test_redteam_path.py, test_gateway_attacks.py, test_redteam_gateway.py):

- the seccomp filter against argument variants (high bits set in `unshare`/`ioctl` arguments, every namespace
  flag one by one, CLONE_NEWTIME, clone3 with CLONE_INTO_CGROUP) and the calls it does not list;
- socket families that no network namespace covers (AF_VSOCK: the hypervisor's channel);
- the host's abstract unix sockets under `sandbox.network: host`;
- another task's sandbox running at the same time (its processes, abstract sockets, SysV IPC, files);
- every setuid/setgid program in /usr, observed while it runs (its uid, gid and capabilities);
- /proc and /sys: writes that only need the sandbox's own namespaces' capabilities, kernel address leaks;
- surviving the run by ending it early: the bwrap init's exit eventfd written from inside, with a daemon left;
- the egress channel reached directly (not through socat) with loopback spellings from /etc/hosts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import subprocess
import textwrap
import threading
import time

import pytest

pytestmark = pytest.mark.adversarial

# syscall(nr, args...) from python in the sandbox; prints "SC name errno" per call (0 when it succeeded)
_PROBE = textwrap.dedent("""
    import ctypes, os, sys
    sys.stdout.reconfigure(line_buffering=True)
    libc = ctypes.CDLL(None, use_errno=True)
    def call(name, nr, *args):
        r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
        print("SC", name, 0 if r >= 0 else ctypes.get_errno())
""")


def _errnos(out: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^SC (\S+) (\d+)$", out, re.M)}


def _x86() -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("syscall numbers are x86_64's")


# CLONE_NEW* flags one by one (unshare and clone), each with a high bit set too (the filter reads the low half)
_NS = {"newns": 0x20000, "newcgroup": 0x2000000, "newuts": 0x4000000, "newipc": 0x8000000,
       "newuser": 0x10000000, "newpid": 0x20000000, "newnet": 0x40000000}  # fmt: skip


def test_the_filter_refuses_every_namespace_flag_and_its_variants(factory_as):
    _x86()
    lines = []
    for name, flag in _NS.items():
        lines += [f"call('unshare_{name}', 272, {flag})", f"call('unshare_{name}_hi', 272, {flag | 1 << 32})",
                  f"call('clone_{name}', 56, {flag | 17}, 0, 0, 0, 0)"]  # fmt: skip
    lines += [
        "call('unshare_newtime', 272, 0x80)",
        # clone3 with CLONE_INTO_CGROUP (a cgroup fd: the way out of the run's cgroup) or any flags: ENOSYS
        "import struct\nargs = struct.pack('=11Q', 0x200000000 | 0x10000000, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0)",
        "buf = ctypes.create_string_buffer(args)\ncall('clone3_into_cgroup', 435, ctypes.addressof(buf), len(args))",
        "call('ptrace_traceme', 101, 0, 0, 0, 0)",
        "call('setns_self', 308, os.open('/proc/self/ns/net', os.O_RDONLY), 0)",
        f"call('tiocsti_hi', 16, 0, {0x5412 | 1 << 32}, 0)",
        f"call('tioclinux_hi', 16, 0, {0x541C | 0xFFFF << 32}, 0)",
        "call('personality_no_aslr_linux32', 135, 0x0008 | 0x0040000)",
        "call('personality_read_implies_exec', 135, 0x0400000)",
        "call('process_vm_readv_init', 310, 1, 0, 0, 0, 0, 0)",
        "call('pidfd_getfd', 438, 0, 0, 0)",
        "call('fsopen_proc', 430, ctypes.addressof(ctypes.create_string_buffer(b'proc')), 0)",
        "call('open_tree_root', 428, -100, ctypes.addressof(ctypes.create_string_buffer(b'/')), 1)",
        "call('io_uring_enter', 426, 0, 0, 0, 0, 0, 0)",
        "call('io_uring_register', 427, 0, 0, 0, 0)",
        "call('request_key', 249, 0, 0, 0, 0)",
        "call('add_key', 248, 0, 0, 0, 0, 0)",
        "call('kexec_file_load', 320, -1, -1, 0, 0, 0)",
        "call('uffd', 323, 0)",
        "print('end')",
    ]
    r = factory_as.sandbox(_PROBE + "\n".join(lines), interpreter="python")
    assert "end" in r.stdout, r
    out = _errnos(r.stdout)
    clone3 = out.pop("clone3_into_cgroup")
    assert clone3 == errno.ENOSYS, r.stdout
    assert out and all(e == errno.EPERM for e in out.values()), {k: v for k, v in out.items() if v != errno.EPERM}


def test_memfd_secret_is_refused(factory_as):
    _x86()
    r = factory_as.sandbox(_PROBE + "call('memfd_secret', 447, 0)", interpreter="python")
    out = _errnos(r.stdout)
    # ENOSYS where the kernel was booted without secretmem is as good as EPERM: nothing to reach
    assert out.get("memfd_secret") in (errno.EPERM, errno.ENOSYS), r


def _host_vsock(port: int) -> socket.socket | None:
    try:
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    except (OSError, AttributeError):
        return None
    try:
        s.bind((socket.VMADDR_CID_ANY, port))
        s.listen(1)
    except OSError:
        s.close()
        return None
    return s


def test_the_vm_socket_family_is_not_the_hosts(factory_as):
    # proof without touching the hypervisor: a vsock port the host holds is "in use" inside the sandbox too
    port = 40000 + os.getpid() % 20000
    host = _host_vsock(port)
    if host is None:
        pytest.skip("no AF_VSOCK on this host")
    script = textwrap.dedent(f"""
        import socket
        try:
            s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        except OSError as exc:
            print("socket refused", exc.errno)
        else:
            try:
                s.bind((socket.VMADDR_CID_ANY, {port}))
                print("own port space")
            except OSError as exc:
                print("bind", exc.errno)
        print("end")
    """)
    try:
        r = factory_as.sandbox(script, interpreter="python")
    finally:
        host.close()
    assert "end" in r.stdout, r
    assert f"bind {errno.EADDRINUSE}" not in r.stdout, "the sandbox shares the host's vsock port space"
    assert "socket refused" in r.stdout, r.stdout


class _Abstract:
    """An abstract unix socket of the host (X11, D-Bus and containerd-shim listen like this), counting connects."""

    def __init__(self) -> None:
        self.name = f"\0factory-rt-escape-{os.getpid()}-{time.time_ns()}"
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(self.name)
        self.sock.listen(8)
        self.reached = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.reached += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def _abstract_probe(name: str) -> str:
    return textwrap.dedent(f"""
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(3)
        try:
            s.connect({name!r})
            print("REACHED")
        except OSError as exc:
            print("refused", exc.errno)
        listed = open("/proc/net/unix").read().count({name[1:]!r})
        print("listed", listed)
    """)


def test_the_hosts_abstract_sockets_are_out_of_reach_with_the_proxied_network(factory_as):
    svc = _Abstract()
    try:
        r = factory_as.sandbox(_abstract_probe(svc.name), interpreter="python")
    finally:
        svc.close()
    assert "refused" in r.stdout and "listed 0" in r.stdout, r
    assert svc.reached == 0


def _landlock_abi() -> int:
    import ctypes

    return ctypes.CDLL(None, use_errno=True).syscall(444, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION


def test_the_hosts_abstract_sockets_are_out_of_reach_with_the_hosts_network(factory_as):
    # the Landlock scope Factory sets (factory/sandbox/launch.py `scope_abstract_sockets`) came with ABI 6
    if _landlock_abi() < 6:
        pytest.skip("this kernel has no Landlock scope for abstract unix sockets (Linux 6.12)")
    svc = _Abstract()
    try:
        r = factory_as.sandbox(_abstract_probe(svc.name), interpreter="python", network="host")
    finally:
        svc.close()
    assert "refused" in r.stdout, r
    assert svc.reached == 0, "a host abstract socket was reached from the sandbox"


_OTHER_TASK = textwrap.dedent("""
    # OTHERTASKMARK
    import ctypes, os, socket, time
    libc = ctypes.CDLL(None, use_errno=True)
    s = socket.socket(socket.AF_UNIX)
    s.bind("\\0factory-rt-other-task")
    s.listen(8)
    shm = libc.shmget(0x7AC7, 4096, 0o1666)  # IPC_CREAT, everyone may read and write
    open("/tmp/other-task-tmp", "w").write("other-task-tmp-5521")
    open("/dev/shm/other-task-shm", "w").write("other-task-shm-5522")
    open("ready", "w").write(f"{os.getpid()} {shm}")
    time.sleep(120)
""")

_PEEK = textwrap.dedent("""
    import ctypes, glob, os, socket
    libc = ctypes.CDLL(None, use_errno=True)
    MARK = b"OTHERTASK" + b"MARK"  # spelled apart: this script's own command line must not match
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect("\\0factory-rt-" + "other-task")
        print("REACHED abstract")
    except OSError:
        pass
    if libc.shmget(0x7AC7, 0, 0) >= 0:
        print("REACHED sysv shm")
    for p in ("/tmp/other-task-tmp", "/dev/shm/other-task-shm", "/proc/sysvipc/shm"):
        try:
            text = open(p).read()
            if "other-task" in text or "0x00007ac7" in text.lower() or "31431" in text:
                print("REACHED", text)
        except OSError:
            pass
    for p in glob.glob("/proc/[0-9]*/cmdline"):
        if MARK in open(p, "rb").read():
            print("REACHED process", p)
    for pid in range(2, 400):  # the other sandbox's pids as seen from the host would be far higher; its own are low
        try:
            os.kill(pid, 0)
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
            if MARK in cmd:
                print("REACHED signal", pid)
        except OSError:
            pass
    print("end")
""")


def test_another_task_running_beside_it_is_out_of_reach(factory_as):
    # a second sandbox of the same Factory (as root: the same host uid 65534), live while this one runs
    other = factory_as.start_once(_OTHER_TASK, "python", task_id=31)
    ready = factory_as.tmp / "ws" / "worktrees" / "task-31" / "ready"
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the other task's sandbox never started: the test proves nothing"
        r = factory_as.sandbox(_PEEK, interpreter="python", task_id=32)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(other.pid, 9)
        other.wait()
    assert "end" in r.stdout, r
    assert "REACHED" not in r.stdout, r.stdout


_SETUID = textwrap.dedent("""
    import os, pty, re, select, stat, sys, time
    found = []
    for d in ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/usr/local"):
        for root, dirs, files in os.walk(d):
            for f in files:
                p = os.path.join(root, f)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_mode & 0o6000 and st.st_mode & 0o111:
                    found.append(p)
    print("setuid", len(found))
    ARGS = {"su": ["root"], "newgrp": ["root"], "gpasswd": ["root"], "chsh": [], "chfn": [], "passwd": [],
            "ssh-agent": ["-D"], "mount": ["-t", "tmpfs", "none", "/tmp"], "umount": ["/tmp"]}
    for p in found:
        pid, fd = pty.fork()  # a terminal of its own: su, passwd and friends wait there for a password
        if pid == 0:
            os.execv(p, [p, *ARGS.get(os.path.basename(p), [])])
        time.sleep(0.3)
        try:
            status = open(f"/proc/{pid}/status").read()
            ids = {k: re.search(rf"^{k}:\\s*(.*)$", status, re.M)[1].split() for k in ("Uid", "Gid", "CapEff")}
            print("RUNNING", os.path.basename(p), *ids["Uid"], "gid", *ids["Gid"], "cap", *ids["CapEff"])
        except (OSError, TypeError):
            print("ended", os.path.basename(p))
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)
    print("end")
""")


def test_no_setuid_or_setgid_program_runs_with_its_owner(factory_as):
    r = factory_as.sandbox(_SETUID, interpreter="python", timeout=90)
    assert "end" in r.stdout, r
    assert int(re.search(r"^setuid (\d+)", r.stdout, re.M)[1]) > 0, "no setuid program here: proves nothing"
    running = [line.split() for line in r.stdout.splitlines() if line.startswith("RUNNING")]
    assert running, r.stdout  # at least the ones waiting for a password were seen
    uid, gid = str(factory_as.sandbox_uid), None
    for fields in running:
        ids = fields[2:6]
        gids = fields[7:11]
        cap = fields[12]
        assert set(ids) == {uid}, fields
        assert "0" not in gids and len(set(gids)) == 1, fields
        gid = gid or gids[0]
        assert gids[0] == gid, fields
        assert cap == "0000000000000000", fields


_PROC_SYS = textwrap.dedent("""
    import os, sys
    sys.stdout.reconfigure(line_buffering=True)
    def write(path, value):
        try:
            with open(path, "w") as fh:
                fh.write(value)
            print("WROTE", path)
        except OSError as exc:
            print("refused", path, exc.errno)
    # writable with a capability of the sandbox's own namespaces (its net and pid ones), which it has not
    write("/proc/sys/net/ipv4/ip_forward", "1")
    write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
    write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")
    write("/proc/sys/kernel/ns_last_pid", "300")
    write("/proc/sys/user/max_user_namespaces", "100")
    write("/proc/sys/vm/drop_caches", "3")
    write("/proc/sys/kernel/modprobe", "/tmp/x")
    write("/proc/sys/fs/protected_symlinks", "0")
    write("/proc/sysrq-trigger", "h")
    write("/proc/self/uid_map", "0 0 1")
    write("/proc/self/setgroups", "allow")
    write("/proc/self/oom_score_adj", "-1000")
    write("/proc/self/attr/current", "unconfined")
    write("/proc/sys/kernel/sched_autogroup_enabled", "0")
    write("/sys/kernel/uevent_helper", "/tmp/x")
    write("/sys/fs/cgroup/cgroup.procs", str(os.getpid()))
    for path in ("/proc/kcore", "/proc/kmsg", "/proc/timer_list", "/proc/1/../1/root/etc/shadow", "/proc/sysrq-trigger",
                 "/sys/kernel/security", "/sys/firmware", "/dev/vsock", "/dev/kvm", "/dev/mem", "/dev/vda"):
        try:
            with open(path, "rb") as fh:
                fh.read(16)
            print("READ", path)
        except OSError:
            pass
    leaked = [line for line in open("/proc/kallsyms") if not line.startswith("0000000000000000")]
    print("kallsyms addresses", len(leaked))
    cg = open("/proc/self/cgroup").read().split()
    print("cgroups not at their namespace's root", [line for line in cg if not line.endswith(":/")])
    print("end")
""")


def test_proc_sys_and_dev_writes_and_kernel_leaks(factory_as):
    r = factory_as.sandbox(_PROC_SYS, interpreter="python")
    assert "end" in r.stdout, r
    assert "WROTE" not in r.stdout and "READ" not in r.stdout, r.stdout
    assert "kallsyms addresses 0" in r.stdout, r.stdout
    assert "cgroups not at their namespace's root []" in r.stdout, r.stdout


_END_EARLY = textwrap.dedent("""
    import os, signal, struct, sys, time
    marker = sys.argv[0]
    # a daemon first (setsid, double fork, every signal it can ignore ignored, a child subreaper)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            import ctypes
            ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
                signal.signal(sig, signal.SIG_IGN)
            os.closerange(0, 3)
            while True:
                with open("beat", "a") as fh:
                    fh.write("x")
                time.sleep(0.05)
        os._exit(0)
    time.sleep(0.3)
    # then end the run early: write an exit status into each eventfd bwrap's init holds, which the bwrap
    # outside the namespace waits on, so it (and Factory) believes the run is over while the daemon beats on
    wrote = 0
    for fd in os.listdir("/proc/1/fd"):
        try:
            if os.readlink(f"/proc/1/fd/{fd}") == "anon_inode:[eventfd]":
                e = os.open(f"/proc/1/fd/{fd}", os.O_WRONLY)
                os.write(e, struct.pack("=Q", 1))
                wrote += 1
        except OSError as exc:
            print("eventfd refused", exc.errno, flush=True)
    print("wrote", wrote, flush=True)
    time.sleep(3)
    print("still here", flush=True)
""")


def test_a_daemon_left_by_a_run_that_ended_itself_early_does_not_survive(factory_as):
    marker = f"rt-early-{os.getpid()}-{time.time_ns()}"
    r = factory_as.sandbox(f"import sys; sys.argv[0] = {marker!r}\n" + _END_EARLY, interpreter="python")
    beat = os.path.join(r.worktree, "beat")
    assert os.path.exists(beat) and os.path.getsize(beat) > 0, ("the daemon never ran: proves nothing", r)
    size = os.path.getsize(beat)
    time.sleep(0.5)  # ten beats
    assert os.path.getsize(beat) == size, "a process of the agent kept running after its run ended"
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout == "", left.stdout


def test_the_egress_channel_reached_directly_refuses_loopback_by_every_name(factory_as):
    # not through socat: straight to the run's unix socket, with the names /etc/hosts gives loopback
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    reached = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            reached.append(1)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    hosts = ["ip6-localhost", "ip6-loopback", "localhost.localdomain", "[::127.0.0.1]", "[0:0:0:0:0:ffff:7f00:1]",
             "[fe80::1%25lo]", "0", "0177.1", "127.000.000.001", "LOCALHOST", "127.0.0.1.", "factory-sandbox",
             "[::ffff:127.0.0.1%lo]"]  # fmt: skip
    script = textwrap.dedent(f"""
        import socket
        def talk(data):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(8)
            s.connect("/run/factory/egress.sock")
            s.sendall(data)
            out = s.recv(200)
            s.close()
            return out.split(b"\\r\\n")[0].decode(errors="replace")
        for h in {hosts!r}:
            print("connect", h, talk(f"CONNECT {{h}}:{port} HTTP/1.1\\r\\nHost: {{h}}:{port}\\r\\n\\r\\n".encode()))
            print("get", h, talk(f"GET http://{{h}}:{port}/ HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode()))
        print("end")
    """)
    try:
        r = factory_as.sandbox(script, interpreter="python", timeout=90)
    finally:
        listener.close()
    assert "end" in r.stdout, r
    answers = [line for line in r.stdout.splitlines() if line.startswith(("connect", "get"))]
    assert len(answers) == 2 * len(hosts) and all(" 200" not in a for a in answers), answers
    assert not reached, f"the host's loopback was reached {len(reached)} times"
