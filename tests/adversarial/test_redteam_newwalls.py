"""Red team: the walls of the last session (socket families, Landlock abstract-socket scope, `reap` by checkout,
session ids in an id's shape) attacked from angles test_redteam_escape.py and test_redteam_readback.py do not try.

Each sandbox attack runs for real through the shared harness (conftest.py), with Factory as root and as an
unprivileged user. A wall found not to hold keeps its assertion and is marked `xfail(strict=True, reason="HOLE: ...")`.

- socket()/socketpair() with the family's high half set, and every family number 0..63;
- the fds a run inherits (anything to accept4() on or to pass on);
- AF_NETLINK protocols: audit, sock_diag (the host's sockets), uevents, in the run's own network;
- host abstract sockets under `network: host` by sendto() on an unbound datagram socket, the run's own
  abstract sockets still working, host pathname sockets in /tmp, /run, /dev/shm;
- a host client connecting to an abstract name the run bound first (squatting, the other direction);
- `reap` against a sibling checkout sharing the prefix (task-1 / task-10), a sibling named "<checkout> (deleted)",
  and a forged id that is a substring of a host git command working in the checkout.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.adversarial.test_redteam_escape import _landlock_abi, _x86
from tests.adversarial.test_redteam_readback import _read_forged
from tests.procs import pids_gone, pids_running

pytestmark = pytest.mark.adversarial

_OK_FAMILIES = (1, 2, 10, 16)


def test_no_socket_family_past_the_four_even_with_high_bits_in_the_argument(factory_as):
    _x86()
    script = textwrap.dedent("""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        made = []
        for hi in (0, 1 << 32, 0xFFFFFFFF << 32):
            for fam in range(64):
                for nr, name in ((41, "socket"), (53, "socketpair")):
                    pair = (ctypes.c_int * 2)()
                    for typ in (1, 2, 3, 5):  # stream, dgram, raw, seqpacket
                        args = [ctypes.c_long(hi | fam), ctypes.c_long(typ), ctypes.c_long(0)]
                        if nr == 53:
                            args.append(pair)
                        r = libc.syscall(ctypes.c_long(nr), *args)
                        if r >= 0:
                            made.append((name, fam, hi, typ))
                            if nr == 41:
                                os.close(r)
                            else:
                                os.close(pair[0]); os.close(pair[1])
        print("MADE", sorted({(n, f) for n, f, _h, _t in made}))
        print("end")
    """)
    r = factory_as.sandbox(script, interpreter="python")
    assert "end" in r.stdout, r
    made = eval(re.search(r"MADE (.*)", r.stdout)[1])  # noqa: S307 (our own output)
    assert {f for _n, f in made} <= set(_OK_FAMILIES), made
    assert {("socket", 1), ("socket", 2), ("socket", 10), ("socketpair", 1)} <= set(made), made  # the probe works


def test_the_run_inherits_no_socket_to_accept_on_or_pass_on(factory_as):
    script = textwrap.dedent("""
        import os, socket, stat
        for fd in sorted(int(f) for f in os.listdir("/proc/self/fd")):
            try:
                st = os.fstat(fd)
            except OSError:
                continue
            kind = "sock" if stat.S_ISSOCK(st.st_mode) else os.readlink(f"/proc/self/fd/{fd}")
            if stat.S_ISSOCK(st.st_mode):
                s = socket.socket(fileno=os.dup(fd))
                kind += f" fam={s.family} type={s.type} listening={s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)}"
                s.detach()
            print("FD", fd, kind)
        print("end")
    """)
    r = factory_as.sandbox(script, interpreter="python")
    assert "end" in r.stdout, r
    fds = re.findall(r"^FD (\d+) (.*)$", r.stdout, re.M)
    # fd 3 is the listing's own directory fd
    socks = [(fd, kind) for fd, kind in fds if kind.startswith("sock")]
    assert all("listening=0" in kind for _fd, kind in socks), socks
    assert all("fam=AddressFamily.AF_UNIX" in kind or "fam=1" in kind for _fd, kind in socks), socks


_NETLINK = textwrap.dedent("""
    import os, socket, struct
    def nl(proto):
        try:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
        except OSError as exc:
            print("socket", proto, exc.errno)
            return None
    # NETLINK_AUDIT (9): AUDIT_GET (1000)
    s = nl(9)
    if s:
        try:
            s.sendto(struct.pack("=IHHII", 16, 1000, 1, 1, 0), (0, 0))
            s.settimeout(2)
            data = s.recv(65536)
            typ = struct.unpack("=IHHII", data[:16])[1]
            err = struct.unpack("=i", data[16:20])[0] if typ == 2 else None
            print("AUDIT", typ, err)
        except OSError as exc:
            print("AUDIT refused", exc.errno)
    # NETLINK_SOCK_DIAG (4): UNIX_DIAG dump of every unix socket, names shown (UDIAG_SHOW_NAME=1)
    s = nl(4)
    names = []
    if s:
        req = struct.pack("=BBHIIIII", 1, 0, 0, 0xFFFFFFFF, 0, 1, 0xFFFFFFFF, 0xFFFFFFFF)  # unix_diag_req
        hdr = struct.pack("=IHHII", 16 + len(req), 20, 0x301, 1, 0)  # SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST|DUMP
        s.sendto(hdr + req, (0, 0))
        s.settimeout(2)
        done = False
        while not done:
            data = s.recv(1 << 20)
            off = 0
            while off < len(data):
                ln, typ = struct.unpack("=IH", data[off:off + 6])
                if typ in (2, 3):
                    done = True
                    break
                names.append(data[off:off + ln])
                off += (ln + 3) & ~3
        print("DIAG", len(names))
        print("DIAGBLOB", b"".join(names).hex())
    # NETLINK_KOBJECT_UEVENT (15): bind to the kernel's group
    s = nl(15)
    if s:
        try:
            s.bind((0, 1))
            print("UEVENT bound")
        except OSError as exc:
            print("UEVENT refused", exc.errno)
    print("end")
""")


def test_netlink_audit_and_sock_diag_show_nothing_of_the_host_in_the_runs_own_network(factory_as):
    name = f"factory-rt-diag-{uuid.uuid4().hex}"
    host = socket.socket(socket.AF_UNIX)
    host.bind("\0" + name)
    host.listen(1)
    try:
        r = factory_as.sandbox(_NETLINK, interpreter="python")
    finally:
        host.close()
    assert "end" in r.stdout, r
    assert name.encode().hex() not in r.stdout, "sock_diag listed a host unix socket"
    m = re.search(r"^AUDIT (\d+) (\S+)", r.stdout, re.M)
    # an answer of type 1000 would be the host's audit status; an NLMSG_ERROR or a refusal is the wall
    assert m is None or m[1] != "1000", r.stdout


def test_netlink_audit_status_is_not_the_runs_with_the_hosts_network(factory_as):
    r = factory_as.sandbox(_NETLINK, interpreter="python", network="host")
    assert "end" in r.stdout, r
    m = re.search(r"^AUDIT (\d+) (\S+)", r.stdout, re.M)
    assert m is None or m[1] != "1000", r.stdout


class _Dgram:
    """A host abstract datagram socket (syslog-, journald-, systemd-notify-like), counting what it receives."""

    def __init__(self) -> None:
        self.name = f"\0factory-rt-dgram-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.name)
        self.got: list[bytes] = []
        threading.Thread(target=self._recv, daemon=True).start()

    def _recv(self) -> None:
        while True:
            try:
                self.got.append(self.sock.recv(4096))
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def _host_scope() -> None:
    if _landlock_abi() < 6:
        pytest.skip("no Landlock scope for abstract unix sockets on this kernel (Linux 6.12)")


def test_host_abstract_datagram_socket_is_out_of_reach_by_sendto_and_sendmsg(factory_as):
    _host_scope()
    svc = _Dgram()
    script = textwrap.dedent(f"""
        import socket
        name = {svc.name!r}
        for how in ("sendto", "connect", "sendmsg", "seqpacket"):
            try:
                if how == "seqpacket":
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                    s.connect(name)
                    s.send(b"x")
                else:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    if how == "sendto":
                        s.sendto(b"sendto", name)
                    elif how == "connect":
                        s.connect(name)
                        s.send(b"connect")
                    else:
                        s.sendmsg([b"sendmsg"], [], 0, name)
                print("SENT", how)
            except OSError as exc:
                print("refused", how, exc.errno)
        print("end")
    """)
    try:
        r = factory_as.sandbox(script, interpreter="python", network="host")
        time.sleep(0.2)
    finally:
        svc.close()
    assert "end" in r.stdout, r
    assert "SENT" not in r.stdout, r.stdout
    assert svc.got == [], svc.got


def test_the_runs_own_abstract_sockets_still_work_with_the_hosts_network(factory_as):
    _host_scope()
    script = textwrap.dedent("""
        import os, socket, subprocess, sys
        name = "\\0factory-rt-own-" + str(os.getpid())
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(name)
        srv.listen(1)
        d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        d.bind(name + "-d")
        # another program of the run (a new exec, as a test server and its client would be)
        code = ("import socket, sys; c = socket.socket(socket.AF_UNIX); c.connect(chr(0) + sys.argv[1]); "
                "c.send(b'hi'); socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'dg', chr(0) + sys.argv[1] + '-d')")
        p = subprocess.Popen([sys.executable, "-c", code, name[1:]])
        conn, _ = srv.accept()
        print("GOT", conn.recv(2).decode(), d.recv(2).decode(), p.wait())
    """)
    r = factory_as.sandbox(script, interpreter="python", network="host", timeout=20)
    assert "GOT hi dg 0" in r.stdout, r.stderr


def test_host_pathname_sockets_in_tmp_run_and_dev_shm_are_not_the_runs(factory_as):
    made = []
    for d in ("/tmp", "/run", "/dev/shm", "/var/tmp"):
        path = f"{d}/factory-rt-sock-{uuid.uuid4().hex[:12]}"
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        os.chmod(path, 0o777)
        s.listen(1)
        made.append((path, s))
    script = (
        "import socket\n"
        + "".join(
            textwrap.dedent(f"""
            for p in ({path!r}, "/proc/1/root" + {path!r}, "/proc/self/root" + {path!r}):
                try:
                    socket.socket(socket.AF_UNIX).connect(p)
                    print("REACHED", p)
                except OSError as exc:
                    print("refused", p, exc.errno)
        """)
            for path, _s in made
        )
        + "print('end')\n"
    )
    try:
        out = [factory_as.sandbox(script, interpreter="python", network=n) for n in ("allowlist", "host")]
    finally:
        for path, s in made:
            s.close()
            os.unlink(path)
    for r in out:
        assert "end" in r.stdout, r
        assert "REACHED" not in r.stdout, r.stdout


@pytest.mark.xfail(strict=True, reason="HOLE: scope is one-way; under network: host a run binds host abstract names")
def test_a_host_client_does_not_reach_an_abstract_name_the_run_squatted(factory_as):
    # with `network: host` the run shares the host's abstract namespace: it can bind a name a host service
    # (another task's run, a D-Bus or X11 name, a language server...) has not bound yet, and host clients
    # connecting to that name talk to the agent. The Landlock scope only stops connections made FROM the run.
    _host_scope()
    name = f"\0factory-rt-squat-{uuid.uuid4().hex}"
    script = textwrap.dedent(f"""
        import socket, time
        s = socket.socket(socket.AF_UNIX)
        s.bind({name!r})
        s.listen(1)
        print("BOUND", flush=True)
        s.settimeout(6)
        try:
            c, _ = s.accept()
            print("HOST CLIENT CAME", c.recv(64))
        except OSError:
            print("nobody")
    """)
    reached = []

    def client() -> None:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            c = socket.socket(socket.AF_UNIX)
            try:
                c.connect(name)
                c.send(b"host-secret-token")
                reached.append(True)
                return
            except OSError:
                time.sleep(0.05)
            finally:
                c.close()

    t = threading.Thread(target=client, daemon=True)
    t.start()
    r = factory_as.sandbox(script, interpreter="python", network="host", timeout=20)
    t.join(1)
    assert "HOST CLIENT CAME" not in r.stdout and not reached, r.stdout


# --- reap ------------------------------------------------------------------------------------------------------


def _victim(cwd, *argv: str) -> subprocess.Popen[bytes]:
    """A process carrying `argv` as a CLI would (`--session-id <id>`), returned once its argv is in /proc."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--session-id", *argv], cwd=cwd)
    deadline = time.monotonic() + 10
    while argv[-1].encode() not in Path(f"/proc/{p.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    return p


def test_reap_spares_a_process_in_a_checkout_that_shares_the_prefix(tmp_path):
    from factory.processes import reap

    sid = str(uuid.uuid4())
    (tmp_path / "task-1").mkdir()
    (tmp_path / "task-10").mkdir()
    (tmp_path / "task-1-x").mkdir()
    victims = [_victim(tmp_path / d, sid) for d in ("task-10", "task-1-x")] + [_victim(tmp_path, sid)]
    mine = _victim(tmp_path / "task-1", sid)
    try:
        assert reap(sid, str(tmp_path / "task-1"), timeout=2) == 1
        assert mine.wait(3) == -9
        assert all(v.poll() is None for v in victims)
    finally:
        for v in [*victims, mine]:
            v.kill()
            v.wait()


def test_reap_spares_a_process_given_the_checkout_through_a_symlink_or_trailing_slash(tmp_path):
    from factory.processes import reap

    sid = str(uuid.uuid4())
    (tmp_path / "real" / "task-1").mkdir(parents=True)
    (tmp_path / "task-10").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    victim = _victim(tmp_path / "task-10", sid)
    mine = _victim(tmp_path / "real" / "task-1", sid)
    try:
        assert reap(sid, str(tmp_path / "link" / "task-1") + "/", timeout=2) == 1
        assert mine.wait(3) == -9 and victim.poll() is None
    finally:
        for v in (victim, mine):
            v.kill()
            v.wait()


def test_reap_spares_a_process_in_a_live_sibling_named_like_a_deleted_checkout(tmp_path):
    from factory.processes import reap

    sid = str(uuid.uuid4())
    (tmp_path / "task-1").mkdir()
    (tmp_path / "task-1 (deleted)").mkdir()  # a live directory, not a deleted checkout
    victim = _victim(tmp_path / "task-1 (deleted)", sid)
    try:
        reap(sid, str(tmp_path / "task-1"), timeout=1)
        time.sleep(0.1)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_reap_still_kills_a_leftover_whose_checkout_was_made_anew(tmp_path):
    from factory.processes import reap

    sid = str(uuid.uuid4())
    top = tmp_path / "task-1"
    (top / "sub").mkdir(parents=True)
    mine = _victim(top / "sub", sid)
    try:
        subprocess.run(["rm", "-rf", str(top)], check=True)
        top.mkdir()
        assert reap(sid, str(top), timeout=2) == 1
        assert mine.wait(3) == -9
    finally:
        mine.kill()
        mine.wait()


def test_a_forged_id_that_is_a_git_option_kills_no_host_git_in_the_checkout(tmp_path):
    from factory.backends import SESSION_ID
    from factory.processes import reap

    forged = "exclude-standard"  # an id's shape, 16 characters: reap takes it
    assert SESSION_ID.fullmatch(forged)
    top = tmp_path / "task-1"
    top.mkdir()
    # stands for the git TaskClone runs in the checkout (clones.py: ls-files -z --others --exclude-standard, cwd=the
    # checkout), e.g. one a crashed worker's finalize left running, or another worker's, when the retry starts
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "git", "ls-files", "-z",
                               "--others", "--exclude-standard"], cwd=top)  # fmt: skip
    try:
        time.sleep(0.3)
        reap(forged, str(top), timeout=1)
        time.sleep(0.1)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


_UEVENT = textwrap.dedent("""
    import socket, time
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15)  # NETLINK_KOBJECT_UEVENT
    s.bind((0, 1))
    for group in (1, 2):  # the kernel's, libudev's: a forged "add" to udevd / every udev monitor of the host
        try:
            s.sendto(b"add@/devices/virtual/mem/null\\0ACTION=add\\0DEVPATH=/devices/virtual/mem/null\\0", (0, group))
            print("SENT", group)
        except OSError as exc:
            print("send refused", group, exc.errno)
    print("LISTENING", flush=True)
    s.settimeout(3)
    end = time.monotonic() + 3
    while time.monotonic() < end:
        try:
            data = s.recv(65536)
        except OSError:
            break
        if b"factoryrt" in data or b"mem/null" in data:
            print("HOST UEVENT", data[:80])
            break
    print("end")
""")


def _uevent_run(factory_as, network):
    mark = factory_as.tmp / f"uevent-{network}"

    def trigger() -> None:  # a host device event while the run listens (udev would see it too)
        for _ in range(40):
            time.sleep(0.1)
            with open("/sys/devices/virtual/mem/null/uevent", "w") as f:
                f.write("change 8a7f9d3c-5f6e-4d8b-9a1b-2c3d4e5f6a7b FACTORYRT=factoryrt")
            if mark.exists():
                return

    t = threading.Thread(target=trigger, daemon=True)
    t.start()
    try:
        return factory_as.sandbox(_UEVENT, interpreter="python", network=network, timeout=20)
    finally:
        mark.touch()
        t.join(5)


def test_no_host_uevent_reaches_a_run_with_its_own_network_and_none_is_forged(factory_as):
    if not os.access("/sys/devices/virtual/mem/null/uevent", os.W_OK):
        pytest.skip("cannot trigger a host uevent here")
    r = _uevent_run(factory_as, "allowlist")
    assert "end" in r.stdout, r
    assert "SENT" not in r.stdout and "HOST UEVENT" not in r.stdout, r.stdout


def test_no_uevent_is_forged_to_the_hosts_udev_with_the_hosts_network(factory_as):
    if not os.access("/sys/devices/virtual/mem/null/uevent", os.W_OK):
        pytest.skip("cannot trigger a host uevent here")
    r = _uevent_run(factory_as, "host")
    assert "end" in r.stdout, r
    assert "SENT" not in r.stdout, r.stdout
    # (receiving the host's device events with the host's network is the host's network: not asserted)
    print(r.stdout)


# --- session ids read from the CLI's output ----------------------------------------------------------------------


@pytest.mark.parametrize("forged", [1234567890123456, ["a" * 16], {"id": "a" * 16}, 1.5e20, True])
async def test_a_session_id_that_is_not_a_string_neither_crashes_the_reader_nor_is_taken(tmp_path, forged):
    lines = [{"type": "system", "subtype": "init", "session_id": forged, "model": "m", "tools": []},
             {"type": "result", "subtype": "success", "is_error": False, "result": "done", "session_id": forged,
              "num_turns": 1}]  # fmt: skip
    progress, result = await _read_forged(lines, tmp_path, fresh=True)
    assert not progress.started and progress.session_id == ""
    assert result.session_id in ("", None)


def test_a_leftover_that_left_the_checkout_still_dies_with_a_crashed_worker(factory_as):
    # `reap` only looks in the checkout; a daemon in a session of its own that chdir'd to /tmp is out of its
    # sight. It must still die: the run's PID namespace goes with bwrap when the worker is SIGKILLed.
    import contextlib

    marker = f"chdirleft-{uuid.uuid4().hex}"
    ready = factory_as.tmp / "ws" / "worktrees" / "task-9" / "ready"
    script = textwrap.dedent(f"""
        import os, subprocess, sys, time
        code = "import os, time; os.chdir('/tmp'); time.sleep(300)"  # its own session (start_new_session)
        mark = {marker[:5]!r} + {marker[5:]!r}  # spelled apart: only the daemon's command line carries it
        subprocess.Popen([sys.executable, "-c", code, mark], start_new_session=True, cwd="/tmp")
        time.sleep(0.3)
        open("ready", "w").close()
        time.sleep(300)
    """)
    harness = factory_as.start_once(script, "python", task_id=9)
    try:
        deadline = time.monotonic() + 8
        while not ready.exists():
            assert harness.poll() is None and time.monotonic() < deadline, "the sandbox never started"
            time.sleep(0.05)
        left = pids_running(marker)
        assert len(left) == 1 and not os.readlink(f"/proc/{left[0]}/cwd").startswith(str(ready.parent)), left
        harness.kill()
        harness.wait()
        assert not pids_gone(marker, 5), "a leftover outside the checkout survived the crashed worker"
    finally:
        for pid in pids_running(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
