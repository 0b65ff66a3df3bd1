"""Agents run contained: scripted agents with Bash try to get out of their bubblewrap sandbox.

Each scenario runs the real CLI in a real sandbox; what its Bash saw comes back to the scripted
model as tool results, which the tests read. Every escape must fail and the task still finish.
Each of these tests fails with `sandbox.enabled: false` (checked by hand when they were written).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from activities._agent_process import PidFile
from factory.config import PACKAGE_ROOT, ConfigError, load_config
from factory.processes import kill_leaderless_groups, process_start_time
from factory.sandbox.policy import allowed_destinations, sandbox_environment
from factory.sandbox.proxy import Destination, EgressProxy, split_host_port
from tests.fakes.anthropic import FAKE_API_KEY, Text, ToolUse
from tests.fakes.http import BackgroundServer
from tests.procs import alive, pids_running

SECRETS = {
    "FACTORY_AUTH_TOKEN": "auth-token-sandbox-8d1f0e9c7b",
    "GITHUB_TOKEN": "ghp_sandboxtokenAAAAAAAAAAAAAAAAAAAAA1",
    "TELEGRAM_BOT_TOKEN": "123456789:AAsandboxsecretsecretsecretsecret12",
}


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Factory's secrets in the worker's environment, and in the start-up environment of a host
    process (what /proc/<pid>/environ shows: a worker started with them, as in production)."""
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    holder = subprocess.Popen(["sleep", "300"], env={**os.environ, **SECRETS}, start_new_session=True)
    yield SECRETS
    holder.kill()
    holder.wait()


def tool_results(model: Any, scenario: str) -> str:
    """The text of every tool result the agent sent back in this scenario (what its Bash printed)."""
    out: list[str] = []
    for req in model.requests_for(scenario):
        for msg in req.messages:
            if msg.get("role") != "user" or not isinstance(msg.get("content"), list):
                continue
            for block in msg["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    content = block.get("content")
                    if isinstance(content, list):
                        content = "\n".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
                    out.append(str(content))
    return "\n".join(dict.fromkeys(out))  # each request repeats the earlier results


def bash(command: str) -> list[ToolUse]:
    return [ToolUse("Bash", {"command": command})]


async def run_scenario(h: Any, scenario: str) -> dict[str, Any]:
    t = await h.create(f"Escape {scenario}", scenario)
    done = await h.wait_for(t["id"], {"done", "failed"})
    assert done["status"] == "done", done  # the escape attempts never break the task itself
    await h.settled(t["id"])
    return done


async def test_the_agent_sees_only_its_own_processes_and_no_secret(start_factory, model, secrets_env):
    model.add_scenario(
        "procs",
        [
            bash(
                "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -E 'TOKEN|KEY|SECRET' | sort -u; "
                "echo COMMS:; ps -eo comm= | sort -u | tr '\\n' ' '; echo; "
                "echo CMDLINES:; for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done 2>/dev/null "
                "| grep -aE 'claude|sk-ant' | cut -c1-300 | head -50"
            ),
            Text("done"),
        ],
    )
    async with start_factory() as h:
        await run_scenario(h, "procs")
    seen = tool_results(model, "procs")
    assert "COMMS:" in seen and "CMDLINES:" in seen, seen
    for name, value in secrets_env.items():
        assert value not in seen, f"{name} reached the agent through /proc"
    comms = set(seen.split("COMMS:", 1)[1].split("\n", 2)[1].split())
    # the worker (python), the Temporal dev server and anything else of the host are out of sight
    assert comms <= {"bwrap", "sh", "socat", "claude", "claude.exe", "bash", "ps", "sort", "tr", "grep"}, comms
    cmdlines = seen.split("CMDLINES:", 1)[1]
    assert "claude" in cmdlines and FAKE_API_KEY not in cmdlines  # the key is in the environment only


async def test_the_agent_cannot_read_or_write_outside_its_worktree(start_factory, model, secrets_env, tmp_path):
    other = tmp_path / "ws" / "worktrees" / "task-999"
    other.mkdir(parents=True)
    (other / "secret.txt").write_text("other-task-secret-5b1c\n")
    (tmp_path / ".env").write_text("GITHUB_TOKEN=dotenv-secret-77aa1\n")
    data, ws = tmp_path / "data", tmp_path / "ws"
    mirror = ws / "mirrors" / "demo.git"
    usr_probe = Path(f"/usr/factory-sandbox-probe-{uuid.uuid4().hex[:8]}")
    reads = {
        "data": f"ls {data}",
        "db": f"find {data} -type f -exec cat {{}} +",
        "dotenv": f"cat {tmp_path}/.env",
        "config": f"cat {tmp_path}/config.yml",
        "other": f"cat {other}/secret.txt",
        "rundir": f"ls {ws}/run",
        "mirror-config": f"cat {mirror}/config",
        "source": f"cat {PACKAGE_ROOT}/pyproject.toml",
        "roothome": "ls /root",
        "docker": "test -S /var/run/docker.sock -o -S /run/docker.sock",
    }
    # writes may land in the sandbox's own throw-away /tmp (where the host paths' parents are
    # made up); what counts is that nothing reaches the host
    writes = [
        f"echo pwned > {other}/pwned",
        f"echo pwned > {data}/pwned",
        f"echo pwned > {usr_probe}",
        "echo pwned > $HOME/../pwned",
        f"mkdir -p {mirror}/hooks && echo pwned > {mirror}/hooks/post-commit",
        f"echo '[core] fsmonitor = touch /tmp/pwned' >> {mirror}/config",
    ]
    command = "; ".join(f'{cmd} >/dev/null 2>&1; echo "RESULT:{name}:$?"' for name, cmd in reads.items())
    command += "; " + "; ".join(f"({cmd}) 2>/dev/null" for cmd in writes)
    command += "; echo pwned > inside.txt; echo RESULT:inside:$?"
    # its own git works: the clone's objects borrowed read-only from the mirror, new ones its own
    command += "; git add inside.txt && git commit -qm 'agent commit'; echo RESULT:commit:$?"
    model.add_scenario("files", [bash(command), Text("done")])
    async with start_factory() as h:
        await run_scenario(h, "files")
    seen = tool_results(model, "files")
    assert "RESULT:inside:0" in seen and "RESULT:commit:0" in seen, seen  # its own worktree is writable
    for name in reads:
        assert f"RESULT:{name}:" in seen, seen
        assert f"RESULT:{name}:0" not in seen, f"{name} succeeded inside the sandbox: {seen}"
    escaped_to_usr = usr_probe.exists()
    usr_probe.unlink(missing_ok=True)  # (only ever there without the sandbox)
    assert not (other / "pwned").exists() and not (data / "pwned").exists() and not escaped_to_usr
    assert not (mirror / "hooks" / "post-commit").exists() and "pwned" not in (mirror / "config").read_text()
    assert not (ws / "homes" / "pwned").exists()


@pytest.fixture
def allowed_site() -> Any:
    app = FastAPI()

    @app.get("/")
    def hello() -> PlainTextResponse:
        return PlainTextResponse("hello-from-an-allowed-host")

    server = BackgroundServer(app)
    url = server.start()
    yield url
    server.stop()


async def test_network_only_through_the_proxy_to_allowed_hosts(start_factory, model, temporal_env, allowed_site):
    temporal_port = temporal_env.client.service_client.config.target_host.rsplit(":", 1)[1]
    allowed = allowed_site.removeprefix("http://")
    async with start_factory(sandbox={"allowed_domains": [allowed]}) as h:
        api = BackgroundServer(h.app)  # Factory's API on a real port of the host's loopback
        api_url = api.start()
        api_port = api_url.rsplit(":", 1)[1]
        try:
            model.add_scenario(
                "net",
                [
                    bash(
                        f"(echo > /dev/tcp/127.0.0.1/{temporal_port}) 2>/dev/null; echo RESULT:temporal:$?; "
                        f"curl --noproxy '*' -fsS -m 5 {api_url}/health >/dev/null 2>&1; echo RESULT:api:$?; "
                        f"curl -fsS -m 5 {api_url}/health >/dev/null 2>&1; echo RESULT:api-proxied:$?; "
                        "curl -fsS -m 5 https://blocked.example.test/ >/dev/null 2>&1; echo RESULT:blocked:$?; "
                        f"curl -fsS -m 5 {allowed_site}/; echo; echo RESULT:allowed:$?"
                    ),
                    Text("done"),
                ],
            )
            t = await h.create("Escape net", "net")
            done = await h.wait_for(t["id"], {"done", "failed"})
            assert done["status"] == "done", done
            logs = (await h.api.get(f"/api/tasks/{t['id']}/logs")).json()
        finally:
            api.stop()
    seen = tool_results(model, "net")
    for name in ("temporal", "api", "api-proxied", "blocked"):
        assert f"RESULT:{name}:" in seen and f"RESULT:{name}:0" not in seen, f"{name} was reachable: {seen}"
    assert "hello-from-an-allowed-host" in seen and "RESULT:allowed:0" in seen, seen
    refused = [e["content"] for e in logs if "refused a connection" in e["content"]]
    assert any("blocked.example.test:443" in r for r in refused), logs
    assert any(f"127.0.0.1:{api_port}" in r for r in refused), logs


async def test_host_network_mode_shares_the_network_but_nothing_else(start_factory, model, allowed_site):
    model.add_scenario(
        "hostnet",
        [
            bash(
                f"curl --noproxy '*' -fsS -m 5 {allowed_site}/; echo; echo RESULT:direct:$?; "
                "echo COMMS:; ps -eo comm= | sort -u | tr '\\n' ' '; echo"
            ),
            Text("done"),
        ],
    )
    async with start_factory(sandbox={"network": "host"}) as h:
        health = (await h.api.get("/health")).json()
        await run_scenario(h, "hostnet")
    assert health["status"] == "degraded" and health["sandbox"].startswith("host network"), health
    seen = tool_results(model, "hostnet")
    assert "hello-from-an-allowed-host" in seen and "RESULT:direct:0" in seen, seen
    comms = set(seen.split("COMMS:", 1)[1].split("\n", 2)[1].split())
    assert comms <= {"bwrap", "claude", "claude.exe", "bash", "ps", "sort", "tr"}, comms


async def test_without_bubblewrap_the_task_fails_at_once_saying_how_to_install_it(
    start_factory, model, tmp_path, monkeypatch
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "claude", "socat"):  # everything an agent run needs except bwrap
        (bin_dir / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    monkeypatch.setenv("PATH", str(bin_dir))
    model.add_scenario("nobwrap", [Text("I should never run")])
    async with start_factory() as h:
        t = await h.create("No bubblewrap", "nobwrap")
        done = await h.wait_for(t["id"], {"done", "failed"})
    assert done["status"] == "failed", done
    assert "apt-get install bubblewrap socat" in (done.get("note") or done.get("error") or str(done)), done
    assert not model.requests_for("nobwrap")


def test_kill_stale_waits_until_the_runs_processes_in_another_session_are_gone(tmp_path):
    """A sandboxed CLI is not in the recorded process group (bwrap gives it a session of its own): the
    next attempt must not look for its session file while it still runs and may yet save it."""
    session = str(uuid.uuid4())
    checkout = tmp_path / "task-1"
    (checkout / "src").mkdir(parents=True)
    code = "import subprocess, sys, time; subprocess.Popen(sys.argv[1:], start_new_session=True); time.sleep(60)"
    inner = [sys.executable, "-c", "import os, time; os.chdir('src'); time.sleep(60)", "--session-id", session]
    proc = subprocess.Popen([sys.executable, "-c", code, *inner], start_new_session=True, cwd=checkout)
    # the id reaches Factory on a line the agent can write: a process elsewhere that carries it is not the run's
    elsewhere = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", session], cwd=tmp_path)
    try:
        pidfile = PidFile(tmp_path / "task-1.pid")
        deadline = time.monotonic() + 10
        while len(pids_running(session)) < 3 and time.monotonic() < deadline:  # the leader, its child, elsewhere
            time.sleep(0.01)
        others = [p for p in pids_running(session) if p not in (proc.pid, elsewhere.pid)]
        assert others, "the child in its own session did not start"
        pidfile.write(proc.pid, "act", 1)
        assert pidfile.kill_stale(session, str(checkout)) is True
        assert pids_running(session) == [elsewhere.pid]  # the run's gone when kill_stale returns, not a moment later
    finally:
        for pid in pids_running(session):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        elsewhere.wait()


def test_kill_stale_kills_what_is_left_of_the_group_when_its_leader_is_gone(tmp_path):
    """A sandbox whose parent died without taking it along (its bwrap and bridge outlived a killed worker
    for hours here) is still in the recorded group: the next attempt kills it."""
    code = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, start_new_session=True)
    pidfile = PidFile(tmp_path / "task-1.pid")
    try:
        pidfile.write(proc.pid, "act", 1)
        deadline = time.monotonic() + 10
        while len(_group(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.stdin.close()  # the leader exits; its child stays in the group
        proc.wait(timeout=10)
        assert _group(proc.pid), "the child left the group"
        assert pidfile.kill_stale() is True
        deadline = time.monotonic() + 10
        while _group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _group(proc.pid) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_workers_first_run_kills_the_groups_of_dead_leaders_and_leaves_live_ones(tmp_path):
    """A sandbox a killed worker left (its leader gone, its namespace's init and bridge alive) goes at the next
    worker's first run on the host, whatever task it was; a live leader's group (another worker's agent) stays."""
    code = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); sys.stdin.read()"
    left = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, start_new_session=True)
    live = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, start_new_session=True)
    try:
        PidFile(tmp_path / "task-7.pid").write(left.pid, "act", 1)
        PidFile(tmp_path / "task-8.pid").write(live.pid, "act", 1)
        deadline = time.monotonic() + 10
        while (len(_group(left.pid)) < 2 or len(_group(live.pid)) < 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        left.stdin.close()
        left.wait(timeout=10)
        assert _group(left.pid), "the child left the group"
        kill_leaderless_groups.cache_clear()
        assert kill_leaderless_groups(tmp_path) == 1
        deadline = time.monotonic() + 10
        while _group(left.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _group(left.pid) == [] and len(_group(live.pid)) == 2
    finally:
        for proc in (left, live):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        kill_leaderless_groups.cache_clear()


def _group(pgid: int) -> list[int]:
    """Live members of process group `pgid`."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                out.append(int(entry))
    return out


def test_kill_stale_kills_only_the_process_it_recorded(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        pidfile = PidFile(tmp_path / "task-1.pid")
        pidfile.write(proc.pid, "act", 1)
        start = process_start_time(proc.pid)
        # a pid reused by another process: same number, another start time -> left alone
        pidfile.path.write_text(f"{proc.pid} {int(start) - 1} python3 act 1\n")
        assert pidfile.kill_stale() is False and alive(proc.pid) and not pidfile.path.exists()
        # the same start time but another program -> left alone
        pidfile.path.write_text(f"{proc.pid} {start} bwrap act 1\n")
        assert pidfile.kill_stale() is False and alive(proc.pid)
        pidfile.write(proc.pid, "act", 1)
        assert pidfile.kill_stale() is True
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- the egress proxy and its allow-list, on real sockets -------------------------------------


async def _through(channel_path: Path, request: str) -> str:
    reader, writer = await asyncio.open_unix_connection(str(channel_path))
    writer.write(request.encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data.decode(errors="replace")


async def test_the_proxy_forwards_allowed_requests_and_refuses_the_rest(allowed_site):
    host, port = split_host_port(allowed_site.removeprefix("http://"))
    refused: list[tuple[int, str, int]] = []
    environments: dict[int, set[tuple[str, int]]] = {}
    proxy = EgressProxy(
        on_refused=lambda task, h, p, _why: refused.append((task, h, p)),
        extra_hosts=lambda task: environments.get(task, set()),
    )
    try:
        allowed = await proxy.open(7, [Destination(host, port)])
        other = await proxy.open(8, [])
        get = f"GET {allowed_site}/ HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n\r\n"
        ok = await _through(allowed.path, get)
        assert ok.startswith("HTTP/1.1 200") and "hello-from-an-allowed-host" in ok, ok
        # the same destination from another task's run is refused, and reported for that task
        no = await _through(other.path, get)
        assert no.startswith("HTTP/1.1 403") and refused == [(8, host, port)], no
        tunnel = await _through(other.path, "CONNECT blocked.example.test:443 HTTP/1.1\r\n\r\n")
        assert tunnel.startswith("HTTP/1.1 403") and refused[-1] == (8, "blocked.example.test", 443)
        # the task's own environment (as the Docker broker reports it) opens while it exists
        environments[8] = {(host, port)}
        assert "hello-from-an-allowed-host" in await _through(other.path, get)
        # a CONNECT tunnel carries the bytes as they are
        direct = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        raw = await _through(allowed.path, f"CONNECT {host}:{port} HTTP/1.1\r\n\r\n{direct}")
        assert raw.startswith("HTTP/1.1 200 Connection established") and "hello-from-an-allowed-host" in raw
    finally:
        await proxy.close()
    assert not proxy.dir.exists()


def test_the_allow_list_comes_from_the_config(tmp_path):
    cfg = load_config(
        tmp_path / "none.yml",
        repos={"a": {"url": "https://git.example.org:8443/x/a.git"}, "b": {"url": "file:///srv/b.git"}},
        github={"api_url": "https://ghe.example.com/api/v3", "web_url": "https://ghe.example.com"},
        sandbox={"allowed_domains": ["pypi.org", "*.internal.example:8080", "10.0.0.5:3000"]},
    )
    # the model API is not on it (the model gateway reaches it, the agent never does)
    got = set(allowed_destinations(cfg, {"ANTHROPIC_BASE_URL": "http://127.0.0.1:4010"}))
    assert got == {
        Destination("git.example.org", 8443),
        Destination("ghe.example.com", 443),
        Destination("pypi.org", 443),
        Destination("pypi.org", 80),
        Destination("*.internal.example", 8080),
        Destination("10.0.0.5", 3000),
    }
    assert Destination("api.anthropic.com", 443) not in allowed_destinations(load_config(tmp_path / "none.yml"), {})
    wildcard = Destination("*.internal.example", 8080)
    assert wildcard.matches("a.internal.example", 8080) and wildcard.matches("b.a.internal.example", 8080)
    assert not wildcard.matches("internal.example", 8080) and not wildcard.matches("evilinternal.example", 8080)
    assert not wildcard.matches("a.internal.example", 443)
    with pytest.raises(ConfigError, match="sandbox.allowed_domains"):
        load_config(tmp_path / "none.yml", sandbox={"allowed_domains": ["https://pypi.org/simple"]})
    with pytest.raises(ConfigError, match="sandbox.network"):
        load_config(tmp_path / "none.yml", sandbox={"network": "none"})


def test_the_environment_is_an_allow_list(tmp_path):
    cfg = load_config(tmp_path / "none.yml")
    base = {
        "PATH": "/usr/bin",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "GITHUB_TOKEN": "x",
        "SSH_AUTH_SOCK": "/tmp/agent.sock",
        "DOCKER_HOST": "unix:///var/run/docker.sock",
        "TEMPORAL_ADDRESS": "127.0.0.1:7233",
        "NO_PROXY": "127.0.0.1",
        "HTTPS_PROXY": "http://corp:3128",
        "SOME_HARMLESS_NAME": "y",
    }
    # the model endpoint and key are the gateway's and the run's stand-in, never the host's
    env = sandbox_environment(cfg, "/ws/homes/task-1", True, base, "http://model.factory.internal", "sk-stand-in")
    assert (env["ANTHROPIC_BASE_URL"], env["ANTHROPIC_API_KEY"]) == ("http://model.factory.internal", "sk-stand-in")
    assert set(env) == {
        "ANTHROPIC_API_KEY",
        "PATH",
        "LANG",
        "ANTHROPIC_BASE_URL",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        "HOME",
        "CLAUDE_CONFIG_DIR",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
    }
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:3128" and env["CLAUDE_CONFIG_DIR"] == "/ws/homes/task-1/.claude"
    hosted = sandbox_environment(cfg, "/h", proxied=False, base=base)
    assert hosted["HTTPS_PROXY"] == "http://corp:3128" and hosted["NO_PROXY"] == "127.0.0.1"


@pytest.mark.fast
def test_no_empty_or_relative_path_entry_reaches_the_sandbox_or_finds_its_programs(tmp_path, monkeypatch):
    """Such an entry names the cwd or a directory under it; an agent's run starts in its checkout."""
    cfg = load_config(tmp_path / "none.yml", workspace_root=str(tmp_path / "ws"), data_dir=str(tmp_path / "d"))
    for worker, kept in [
        (":/usr/local/bin:/usr/bin", "/usr/local/bin:/usr/bin"),
        (".:bin:node_modules/.bin:/usr/bin::/bin:", "/usr/bin:/bin"),
        ("bin:.", "/usr/local/bin:/usr/bin:/bin"),
    ]:
        assert sandbox_environment(cfg, "/h", True, base={"PATH": worker})["PATH"] == kept
    # the programs Factory starts in a sandbox (the CLI, socat, sleep, prlimit) are found the same way
    from factory.processes import which
    from factory.sandbox import limits

    (tmp_path / "bin").mkdir()
    for name in ("factory-test-cli", "socat", "prlimit"):
        (tmp_path / "bin" / name).write_text("#!/bin/sh\n")
        (tmp_path / "bin" / name).chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "bin:/usr/bin:/bin")
    assert which("factory-test-cli") is None and which("socat") in (None, "/usr/bin/socat", "/bin/socat")
    # a configured relative path is the worker's cwd's
    assert which("bin/factory-test-cli") == str(tmp_path / "bin" / "factory-test-cli")
    monkeypatch.setattr(limits, "_v2_parent", lambda: None)
    monkeypatch.setattr(limits, "_v1_parents", dict)
    run = limits.prepare(limits.Limits(processes=64))
    try:
        assert run.how["processes"].startswith("rlimit") and run.inner[0] in ("/usr/bin/prlimit", "/bin/prlimit")
    finally:
        run.close()


# --- the egress bridge inside the sandbox ------------------------------------------------------------


def _bridge(tmp_path: Path, socat: str, inner: str) -> subprocess.CompletedProcess[str]:
    """The bridge script (factory/sandbox/bwrap.py) in a network namespace of its own, `socat` replaced."""
    from factory.sandbox.bwrap import bridge_script

    shim = tmp_path / "socat"
    shim.write_text(f"#!/bin/sh\n{socat}\n")
    shim.chmod(0o755)
    script = bridge_script(str(tmp_path / "none.sock"), socat=str(shim))
    argv = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--unshare-net",
            "--die-with-parent", "/bin/sh", "-c", script, "factory-sandbox", "/bin/sh", "-c", inner]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@pytest.mark.fast
def test_the_agent_starts_only_once_the_bridge_listens_however_slow_socat_is(tmp_path):
    from factory.sandbox.bwrap import PROXY_PORT

    listening = f"grep -c ':{PROXY_PORT:04X} 00000000:0000 0A' /proc/net/tcp"
    # socat 0.4 s late: the back-to-back looks run out, the spaced ones see it
    slow = _bridge(tmp_path, 'sleep 0.4; exec /usr/bin/socat "$@"', listening)
    assert (slow.returncode, slow.stdout.strip()) == (0, "1"), slow.stderr


def test_a_bridge_that_never_listens_stops_the_run_with_the_reason(tmp_path):
    started = time.monotonic()
    res = _bridge(tmp_path, "exit 1", "echo AGENT-RAN")
    assert res.returncode == 70 and "AGENT-RAN" not in res.stdout
    assert "the egress bridge did not start" in res.stderr
    assert time.monotonic() - started < 20
