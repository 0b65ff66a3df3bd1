"""Red team: attacks from inside a real sandbox on what surrounds it (the host's memory, its loopback,
other tasks' files, the run's end). Each runs for real through the shared harness (conftest.py), with
Factory as root and as an unprivileged user, and fails if the wall does not hold.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import textwrap
import threading
import time

import pytest

pytestmark = pytest.mark.adversarial


def test_a_daemon_started_by_the_agent_does_not_outlive_the_run(factory_as):
    # setsid, a double fork, stdio closed, SIGHUP/SIGTERM ignored: everything a daemon does to survive
    marker = f"rt-daemon-{os.getpid()}-{time.time_ns()}"
    script = f"# {marker}\n" + textwrap.dedent("""
        import os, signal, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                os.closerange(0, 3)
                while True:
                    with open("beat", "a") as fh:
                        fh.write("x")
                    time.sleep(0.05)
            os._exit(0)
        time.sleep(0.5)
        print("started", flush=True)
    """)
    r = factory_as.sandbox(script, interpreter="python")
    assert "started" in r.stdout, r
    beat = os.path.join(r.worktree, "beat")
    size = os.path.getsize(beat)
    assert size > 0, "the daemon never ran: the test proves nothing"
    time.sleep(0.5)  # measuring: ten beats' time, in which a surviving daemon writes ten times
    assert os.path.getsize(beat) == size, "a process of the agent kept running after its run ended"
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout == "", left.stdout


def test_tmp_dev_shm_and_var_tmp_are_capped_at_the_runs_memory(factory_as):
    # the sandbox's own tmpfs mounts are RAM: with no cgroup (Factory as a normal user) nothing charged
    # them to the run, and each could take half the host's memory (four of them: /tmp, /var/tmp, /dev/shm, /run)
    script = (
        "for d in /tmp /var/tmp /dev/shm /run; do n=0; "
        "while [ $n -lt 12 ]; do dd if=/dev/zero of=$d/rt$n bs=1M count=32 2>/dev/null || break; n=$((n+1)); done; "
        'echo "$d $(du -smx $d | cut -f1)"; rm -f $d/rt*; done'
    )
    r = factory_as.sandbox(script, limits={"memory_mb": 128, "file_size_mb": 64}, timeout=60)
    used = {m[1]: int(m[2]) for m in re.finditer(r"^(/\S+) (\d+)$", r.stdout, re.M)}
    # either the writes stopped near the run's memory, or the run was killed for it (a cgroup's OOM)
    assert all(mb <= 160 for mb in used.values()), r
    assert len(used) == 4 or r.rc in (-9, 137), r


def test_other_tasks_checkouts_homes_the_run_dir_and_mirrors_are_out_of_reach(factory_as):
    ws = factory_as.tmp / "ws"
    planted = {
        ws / "worktrees" / "task-2" / "secret.txt": "other-checkout-7781",
        ws / "homes" / "task-2" / ".claude" / "projects" / "p" / "s.jsonl": "other-session-7782",
        ws / "run" / "task-1.pid": "1 1 bwrap x 1",
        ws / "mirrors" / "demo.git" / "config": "[core]\n\tbare = true\n",
    }
    for path, text in planted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    subprocess.run(["chown", "-R", f"{factory_as.uid}:{factory_as.gid}", str(ws)], check=True)
    paths = " ".join(str(p) for p in planted)
    r = factory_as.sandbox(
        f"for p in {paths}; do cat $p; echo pwned >> $p && echo WROTE $p; done; "
        f"ls {ws}/worktrees {ws}/homes {ws}/run {ws}/mirrors 2>&1; echo end"
    )
    assert "end" in r.stdout, r
    assert "7781" not in r.stdout and "7782" not in r.stdout and "bwrap" not in r.stdout, r
    assert "WROTE" not in r.stdout and "task-2" not in r.stdout and "demo.git" not in r.stdout, r
    for path, text in planted.items():
        assert path.read_text() == text, path


class _Listener:
    """A TCP service on the host's loopback (as Temporal and the API are), counting who reaches it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.abstract = socket.socket(socket.AF_UNIX)
        self.abstract.bind(f"\0factory-rt-{os.getpid()}-{self.port}")
        self.abstract.listen(8)
        self.reached = 0
        for s in (self.sock, self.abstract):
            threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s: socket.socket) -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            self.reached += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self.abstract.close()


def test_the_hosts_loopback_services_are_unreachable_every_way(factory_as):
    svc = _Listener()
    p = svc.port
    hosts = [f"127.0.0.1:{p}", f"localhost:{p}", f"[::1]:{p}", f"[::ffff:127.0.0.1]:{p}", f"0.0.0.0:{p}",
             f"2130706433:{p}", f"127.1:{p}", f"0x7f.1:{p}", f"[::ffff:7f00:1]:{p}", f"localhost.:{p}"]  # fmt: skip
    script = textwrap.dedent(f"""
        import socket
        def talk(data):
            s = socket.create_connection(("127.0.0.1", 3128), 5)
            s.sendall(data)
            out = s.recv(200)
            s.close()
            return out.split(b"\\r\\n")[0].decode()
        for fam, addr in ((socket.AF_INET, ("127.0.0.1", {p})), (socket.AF_INET6, ("::1", {p})),
                          (socket.AF_UNIX, "\\0factory-rt-{os.getpid()}-{p}")):
            try:
                s = socket.socket(fam)
                s.settimeout(3)
                s.connect(addr)
                print("DIRECT", addr)
            except OSError as exc:
                print("direct refused", exc.errno)
        for h in {hosts!r}:
            print("connect", h, talk(f"CONNECT {{h}} HTTP/1.1\\r\\nHost: {{h}}\\r\\n\\r\\n".encode()))
            print("get", h, talk(f"GET http://{{h}}/ HTTP/1.1\\r\\nHost: {{h}}\\r\\n\\r\\n".encode()))
        # the gateway's virtual host, asked to forward somewhere else by its Host header
        vhost = "GET http://model.factory.internal/v1/models HTTP/1.1\\r\\nHost: 127.0.0.1:{p}\\r\\n\\r\\n"
        print("vhost", talk(vhost.encode()))
        print("done")
    """)
    try:
        r = factory_as.sandbox(script, interpreter="python", timeout=90)
    finally:
        svc.close()
    assert "done" in r.stdout, r
    assert "DIRECT" not in r.stdout, r
    answers = [line for line in r.stdout.splitlines() if line.startswith(("connect", "get"))]
    assert len(answers) == 2 * len(hosts) and all(" HTTP/1.1 200" not in a for a in answers), answers
    assert svc.reached == 0, f"the host's loopback service was reached {svc.reached} times"


# --- the agent floods Factory's database through the CLI's stdout (the real CLI, end to end) ---------

_CLI = (
    'p=$$; while [ "$p" -gt 1 ]; do case "$(cat /proc/$p/comm)" in claude*) break;; esac; '
    "p=$(awk '{print $4}' /proc/$p/stat); done; "
)
# socat, the egress bridge, shares the CLI's stdout (the pipe Factory reads) and is not the CLI
_SOCAT = "p=$(grep -l '^socat' /proc/[0-9]*/comm | head -1 | cut -d/ -f3); "


@pytest.mark.parametrize("via", ["cli", "socat"])
async def test_a_flood_of_lines_on_the_clis_stdout_does_not_flood_the_database(start_factory, model, via):
    """20,000 log lines and 2,000 board messages (each also sent to Telegram) written onto the pipe Factory
    reads, in the CLI's place, by the agent's Bash."""
    from sqlmodel import func, select

    from factory.store.tables import Message, TaskLog, session_scope
    from tests.fakes.anthropic import Text
    from tests.test_sandbox import bash, tool_results

    flood = textwrap.dedent("""
        import json, sys
        text = json.dumps({"type": "message", "content": "spam"})
        msg = json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": text}]}})
        with open(f"/proc/{sys.argv[1]}/fd/1", "w") as w:
            for i in range(20000):
                w.write(f"junk line {i}\\n")
            for i in range(2000):
                w.write(msg + "\\n")
    """)
    encoded = base64.b64encode(flood.encode()).decode()
    attack = (
        _CLI if via == "cli" else _SOCAT
    ) + f"echo {encoded} | base64 -d > /tmp/flood.py && python3 /tmp/flood.py $p && echo FLOODED"
    model.add_scenario(f"flood-{via}", [bash(attack), Text("flooded")])
    async with start_factory() as h:
        t = await h.create("Flood the log", f"flood-{via}")
        await h.wait_for(t["id"], {"done", "failed", "awaiting_input"})
        with session_scope(h.runtime.engine) as s:
            logs = s.exec(select(func.count()).select_from(TaskLog).where(TaskLog.task_id == t["id"])).one()
            msgs = s.exec(select(func.count()).select_from(Message).where(Message.task_id == t["id"])).one()
    said = tool_results(model, f"flood-{via}")
    # measured in the sandbox: opening /proc/<pid>/fd/1 of the CLI, of socat or of bwrap is refused (EACCES),
    # so nothing lands; should a CLI allow it, Factory keeps no cap of its own and this fails
    assert "FLOODED" in said or "Permission denied" in said, said
    assert logs < 3000 and msgs < 300, f"one run wrote {logs} log rows and {msgs} board messages"
