"""Attacks on the CPU walls (`factory.sandbox.limits`): an agent trying, from inside a real sandbox, to
get more CPU than the agents' cgroup allows or to take it from Factory. Factory runs as root and as a
normal user (`factory_as`, see conftest.py). Each test fails if the attack works.

CPU shares are measured as ratios over one window, both sides pinned to CPU 0, never as absolute times.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.adversarial.cpu_share import SPIN, has_cpu_cgroup

pytestmark = pytest.mark.adversarial

# the agents' cgroup is opt-in (sandbox.limits.agents_cpu_weight): these tests switch it on
AGENTS_YIELD = {"agents_cpu_weight": 10}

_X86 = os.uname().machine == "x86_64"
_SCHED_SETATTR = 314 if _X86 else 274
_IOPRIO_SET = 251 if _X86 else 30


def test_no_real_time_deadline_higher_priority_or_io_real_time_class(factory_as):
    script = textwrap.dedent(f"""
        import ctypes, os, resource, struct, time
        libc = ctypes.CDLL(None, use_errno=True)
        def attempt(name, f):
            try:
                f()
                print(name, 0, flush=True)
            except OSError as e:
                print(name, e.errno, flush=True)
            except ValueError:  # python's own refusal to raise a hard rlimit
                print(name, {errno.EPERM}, flush=True)
        def sys_(nr, *args):
            if libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args]) != 0:
                raise OSError(ctypes.get_errno(), "")
        # struct sched_attr (v0, 48 bytes): SCHED_DEADLINE 10 ms every 30 ms
        dl = ctypes.create_string_buffer(struct.pack("IIQiIQQQ", 48, 6, 0, 0, 0, 10**7, 3 * 10**7, 3 * 10**7))
        fifo = ctypes.create_string_buffer(struct.pack("IIQiIQQQ", 48, 1, 0, 0, 50, 0, 0, 0))
        attempt("rlimit_rtprio", lambda: resource.setrlimit(resource.RLIMIT_RTPRIO, (50, 50)))
        attempt("rlimit_nice", lambda: resource.setrlimit(resource.RLIMIT_NICE, (40, 40)))
        attempt("fifo", lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1)))
        attempt("rr", lambda: os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1)))
        attempt("setattr_fifo", lambda: sys_({_SCHED_SETATTR}, 0, ctypes.addressof(fifo), 0))
        attempt("deadline", lambda: sys_({_SCHED_SETATTR}, 0, ctypes.addressof(dl), 0))
        attempt("nice_0", lambda: os.setpriority(os.PRIO_PROCESS, 0, 0))
        attempt("nice_-5", lambda: os.setpriority(os.PRIO_PROCESS, 0, -5))
        attempt("pgrp_nice_0", lambda: os.setpriority(os.PRIO_PGRP, 0, 0))
        attempt("user_nice_0", lambda: os.setpriority(os.PRIO_USER, os.getuid(), 0))
        def autogroup(v):
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(v))
        attempt("autogroup_-5", lambda: autogroup(-5))
        attempt("ioprio_rt", lambda: sys_({_IOPRIO_SET}, 1, 0, (1 << 13) | 0))      # IOPRIO_WHO_PROCESS, CLASS_RT
        attempt("ioprio_user_rt", lambda: sys_({_IOPRIO_SET}, 3, os.getuid(), (1 << 13) | 0))
        print("policy", os.sched_getscheduler(0), "nice", os.getpriority(os.PRIO_PROCESS, 0))
    """)
    r = factory_as.sandbox(script, interpreter="python")
    assert r.rc == 0, r
    out = {m[1]: int(m[2]) for m in re.finditer(r"^(\S+) (-?\d+)$", r.stdout, re.M)}
    refused = ("rlimit_rtprio", "rlimit_nice", "fifo", "rr", "setattr_fifo", "deadline", "nice_0", "nice_-5",
               "pgrp_nice_0", "user_nice_0", "autogroup_-5", "ioprio_rt", "ioprio_user_rt")  # fmt: skip
    allowed = {k: out.get(k) for k in refused if out.get(k) not in (errno.EPERM, errno.EACCES)}
    assert not allowed, f"not refused: {allowed}; {r.stdout}"
    m = re.search(r"^policy (\d+) nice (\d+)$", r.stdout, re.M)
    assert m and int(m[1]) == os.SCHED_OTHER and int(m[2]) >= 10, r.stdout


def _nice_and_ioprio(pid: int) -> tuple[int, str]:
    nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    io = subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return nice, io


def test_the_agent_cannot_lower_the_priority_of_factory_s_processes_of_its_uid(factory_as):
    # PRIO_USER / IOPRIO_WHO_USER name every process of a uid: the sandbox's host uid is Factory's own
    # when Factory runs as a user, and `sandbox.uid`'s (processes of other runs, other services) as root
    uid = factory_as.sandbox_uid
    gid = factory_as.sandbox_uid if factory_as.name == "root" else factory_as.gid
    outside = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "sleep", "30"])
    watched = [outside.pid] + ([factory_as._proc.pid] if factory_as.name == "user" else [])
    try:
        time.sleep(0.1)
        before = {pid: _nice_and_ioprio(pid) for pid in watched}
        r = factory_as.sandbox(_PRIO_USER.format(ioprio_set=_IOPRIO_SET), interpreter="python")
        after = {pid: _nice_and_ioprio(pid) for pid in watched}
    finally:
        outside.kill()
        outside.wait()
    assert r.rc == 0, r
    assert re.search(r"^user ok$", r.stdout, re.M), r  # the call itself worked, on the namespace's processes
    assert after == before, f"a process outside the sandbox was reprioritized: {before} -> {after}; {r.stdout}"


_PRIO_USER = textwrap.dedent("""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    for name, f in [("user", lambda: os.setpriority(os.PRIO_USER, os.getuid(), 19)),
                    ("user0", lambda: os.setpriority(os.PRIO_USER, 0, 19)),
                    ("pgrp", lambda: os.setpriority(os.PRIO_PGRP, 0, 19))]:
        try:
            f()
            print(name, "ok")
        except OSError as e:
            print(name, e.errno)
    # IOPRIO_WHO_USER, class idle
    print("ioprio_user", libc.syscall({ioprio_set}, 3, os.getuid(), 3 << 13), ctypes.get_errno())
""")


def test_every_process_of_the_run_socat_and_bwrap_s_init_included_is_in_the_run_s_cgroup(factory_as):
    if factory_as.name != "root":
        pytest.skip("a normal user gets no cgroup here")
    if not has_cpu_cgroup():
        pytest.skip("no cpu cgroup controller on this host")
    # the agent's own attempts to leave, then the host looks at every process of the sandbox's PID namespace
    script = textwrap.dedent("""
        import ctypes, os, time
        libc = ctypes.CDLL(None, use_errno=True)
        print("unshare_cgroup", libc.unshare(0x02000000), ctypes.get_errno())
        for p in ("/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/cpu/cgroup.procs", "/proc/1/root/sys/fs/cgroup/cpu/tasks"):
            try:
                with open(p, "w") as f:
                    f.write(str(os.getpid()))
                print("WROTE", p)
            except OSError as e:
                print("refused", p, e.errno)
        os.system("mkdir -p /tmp/cg; mount -t cgroup -o cpu cgroup /tmp/cg 2>/dev/null && echo MOUNTED")
        print("pidns", os.readlink("/proc/self/ns/pid"), flush=True)
        if os.fork() == 0:
            os.setsid()
            time.sleep(3)
            os._exit(0)
        open("ready", "w").close()
        time.sleep(3)
    """)
    out: dict[str, object] = {}
    th = threading.Thread(target=lambda: out.update(r=factory_as.sandbox(script, interpreter="python", timeout=30,
                                                                         limits=AGENTS_YIELD)))  # fmt: skip
    work = factory_as.tmp / "ws" / "worktrees" / "task-1"
    (work / "ready").unlink(missing_ok=True)
    th.start()
    deadline = time.monotonic() + 20
    while not (work / "ready").exists() and th.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    members: dict[int, str] = {}
    # the sandbox's processes: those in the agent's PID namespace (the agent found by its script)
    ns, host_ns = None, os.readlink("/proc/self/ns/pid")
    for pid in _pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if "mount -t cgroup -o cpu" in cmdline and os.readlink(f"/proc/{pid}/ns/pid") != host_ns:
                ns = os.readlink(f"/proc/{pid}/ns/pid")  # not bwrap's outer process, whose argv has it too
        except OSError:
            continue
    assert ns is not None, "the agent's process was not found"
    for pid in _pids():
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == ns or os.readlink(f"/proc/{pid}/ns/pid_for_children") == ns:
                members[pid] = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
    for pid in list(members):  # and bwrap's outer process, the init's parent, outside the namespace
        with open(f"/proc/{pid}/status") as f:
            ppid = int(re.search(r"^PPid:\s*(\d+)", f.read(), re.M)[1])  # type: ignore[index]
        if ppid not in members and Path(f"/proc/{ppid}/comm").read_text().strip() == "bwrap":
            members[ppid] = Path(f"/proc/{ppid}/cgroup").read_text()
    th.join(30)
    r = out["r"]
    assert "WROTE" not in r.stdout and "MOUNTED" not in r.stdout, r  # type: ignore[attr-defined]
    assert re.search(r"^unshare_cgroup -1 1$", r.stdout, re.M), r  # type: ignore[attr-defined]
    # bwrap's outer process, its init, the bridge's socat, the agent and its new session: at least 5
    assert len(members) >= 5, members
    for pid, cg in members.items():
        for ctrl in ("cpu", "pids", "memory"):  # v1: the controller's line; v2: the one unified line
            m = re.search(rf"^\d+:[^:]*\b{ctrl}\b[^:]*:(.*)$", cg, re.M) or re.search(r"^0::(.*)$", cg, re.M)
            assert m and re.search(r"/factory/run-[^/]+$", m[1]), (pid, ctrl, cg)


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def test_400_spinners_in_400_sessions_that_reset_their_group_s_nice_still_yield_the_cpu(factory_as):
    if factory_as.name != "root":
        pytest.skip(
            "a normal user gets no cpu cgroup here: each new session (setsid) is a scheduling group weighed as "
            "Factory's, and a group's nice goes back to 0 without privilege; nice is all that holds"
        )
    if not has_cpu_cgroup():
        pytest.skip("no cpu cgroup controller on this host")
    # 400 spinners (under the 512 processes), each in a new session that writes its autogroup back to nice 0,
    # all pinned to CPU 0; the parent, on another CPU when there is one, sums their CPU time over the window
    agent = textwrap.dedent("""
        import os, time
        cpus = sorted(os.sched_getaffinity(0))
        kids = []
        for i in range(400):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                os.setsid()
                os.sched_setaffinity(0, {0})
                time.sleep(0.2)  # the kernel takes one autogroup change a tenth of a second
                try:
                    with open("/proc/self/autogroup", "w") as f:
                        f.write("0")
                except OSError:
                    pass
                os.execv("/bin/sh", ["sh", "-c", "while :; do :; done"])
            kids.append(pid)
        os.sched_setaffinity(0, {cpus[-1]})
        print("spawned", len(kids), flush=True)
        time.sleep(0.5)
        open("ready-0", "w").close()
        def ns():  # time on a CPU, in ns, of every spinner
            t = 0
            for pid in kids:
                try:
                    t += int(open(f"/proc/{pid}/schedstat").read().split()[0])
                except OSError:
                    pass
            return t
        while not os.path.exists("go"):
            time.sleep(0.01)
        t0, t1 = (float(x) for x in open("go").read().split())
        while time.time() < t0:
            time.sleep(0.002)
        a, ta = ns(), time.time()
        while time.time() < t1:
            time.sleep(0.002)
        b, tb = ns(), time.time()
        print(f"agents {(b - a) / 1e9:.3f} window {ta - t0:.3f} {tb - t1:.3f}", flush=True)
        os.kill(0, 9)
    """)
    host_spin = SPIN + "import sys\nprint(spin(sys.argv[1]))"
    work = factory_as.tmp / "ws" / "worktrees" / "task-1"
    for leftover in [*work.glob("ready-*"), work / "go"]:
        leftover.unlink(missing_ok=True)
    out: dict[str, object] = {}
    th = threading.Thread(target=lambda: out.update(r=factory_as.sandbox(agent, interpreter="python", timeout=60,
                                                                         limits=AGENTS_YIELD)))  # fmt: skip
    th.start()
    deadline = time.monotonic() + 45
    while not (work / "ready-0").exists() and th.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    go = factory_as.tmp / "go"
    t0 = time.time() + 0.3
    go.write_text(f"{t0} {t0 + 1.5}")
    host = subprocess.Popen([sys.executable, "-c", host_spin, str(go)], stdout=subprocess.PIPE, text=True)
    (work / "go").write_text(go.read_text())
    host_out = host.communicate(timeout=30)[0]
    th.join(60)
    r = out["r"]
    m = re.search(r"^spawned (\d+)$", r.stdout, re.M)  # type: ignore[attr-defined]
    a = re.search(r"^agents (\S+) ", r.stdout, re.M)  # type: ignore[attr-defined]
    assert m and a, r
    assert int(m[1]) == 400, r
    host_cpu, agents_cpu = float(host_out), float(a[1])
    share = host_cpu / (host_cpu + agents_cpu)
    assert share > 0.5, f"Factory got {share:.0%} of CPU 0 ({host_cpu:.2f} s against the agents' {agents_cpu:.2f} s)"


def _cpu_of(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def test_a_flood_of_refused_connections_costs_factory_about_what_it_costs_the_agent(factory_as):
    # every connection the agent opens to the bridge is served by Factory's proxy in Factory's process,
    # outside the agents' cgroup. Measured here: Factory (the harness process: proxy, set-up and all)
    # spends 0.5-4.6x what the agent spends (its own process, the bridge's socat and its forks): asyncio's
    # cost of a connection, no more. The guard: no order-of-magnitude amplification (a refusal that
    # resolved names, logged each time or wrote to the database would be one)
    script = textwrap.dedent("""
        import os, socket, time
        def cpu(pid, children):
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            return sum(int(x) for x in f[11:15 if children else 13]) / os.sysconf("SC_CLK_TCK")
        socat = next(p for p in os.listdir("/proc") if p.isdigit() and open(f"/proc/{p}/comm").read().strip() == "socat")
        s0, c0 = cpu(socat, True), time.process_time()
        n, end = 0, time.time() + 2
        while time.time() < end:
            s = socket.create_connection(("127.0.0.1", 3128))
            s.sendall(b"CONNECT denied.invalid:443 HTTP/1.1\\r\\nHost: denied.invalid:443\\r\\n\\r\\n")
            s.recv(4096)
            s.close()
            n += 1
        time.sleep(0.2)  # socat's last forks waited for
        print("n", n, "agent", time.process_time() - c0 + cpu(socat, True) - s0)
    """)
    pid = factory_as._proc.pid
    before = _cpu_of(pid)
    r = factory_as.sandbox(script, interpreter="python")
    factory = _cpu_of(pid) - before
    m = re.search(r"^n (\d+) agent (\S+)$", r.stdout, re.M)
    assert r.rc == 0 and m and int(m[1]) > 50, r
    assert factory < 10 * float(m[2]), (
        f"{m[1]} connections cost Factory {factory:.2f} s of CPU, the agent {float(m[2]):.2f} s"
    )


# --- work the agent makes Factory do in Factory's own cgroup ------------------------------------------


async def _gateway_cpu(body: bytes) -> float:
    """CPU seconds of Factory's event loop thread for one request of `body` from the run (stand-in key)."""
    from factory.config_sections import ModelPrice
    from factory.sandbox.gateway import MODEL_HOST, ModelGateway
    from factory.sandbox.proxy import EgressProxy
    from tests.adversarial.test_gateway_attacks import Recorder

    upstream = await Recorder().start()
    gw = ModelGateway(
        f"http://127.0.0.1:{upstream.port}", "sk-ant-real", None, {"": ModelPrice(input_per_mtok=1, output_per_mtok=1)}
    )
    proxy = EgressProxy()
    run = gw.open_run(None)
    try:
        ch = await proxy.open(1, [], {(MODEL_HOST, 80): run.serve})
        head = (f"POST http://{MODEL_HOST}/v1/messages/count_tokens HTTP/1.1\r\nHost: {MODEL_HOST}\r\n"
                f"x-api-key: {run.stand_in}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
        c = time.thread_time()
        reader, writer = await asyncio.open_unix_connection(str(ch.path))
        writer.write(head.encode() + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 60)
        writer.close()
        spent = time.thread_time() - c
        assert answer.startswith(b"HTTP/1.1 "), answer[:200]
        return spent
    finally:
        await run.close()
        await proxy.close()
        upstream.stop()


async def test_a_body_of_millions_of_tiny_json_values_costs_factory_no_more_than_a_plain_one():
    # the agent holds its run's stand-in key (the CLI needs it), so it may send the gateway 32 MiB bodies;
    # the gateway json-parses each on Factory's event loop (model, max_tokens, keys given twice), in
    # Factory's cgroup: 32 MiB of `{},` costs it seconds of CPU, the agent a few ms to send, and every
    # other run's proxying waits meanwhile. Compared with a plain body (one long string) of the same size.
    # Now a body that opens more than MAX_CONTAINERS objects and arrays is refused before it is parsed
    n = 32 * 1024 * 1024 - 1024
    plain = b'{"model":"x","max_tokens":1,"messages":[{"role":"user","content":"' + b"a" * (n - 80) + b'"}]}'
    hostile = b'{"model":"x","max_tokens":1,"a":[' + b"{}," * ((len(plain) - 40) // 3) + b"{}]}"
    hostile += b" " * (len(plain) - len(hostile))
    assert len(hostile) == len(plain)
    base = await _gateway_cpu(plain)
    cost = await _gateway_cpu(hostile)
    assert cost < 5 * base + 0.05, f"Factory spent {cost:.2f} s on the hostile body, {base:.2f} s on a plain one"
