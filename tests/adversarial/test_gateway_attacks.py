"""Attacks on the model gateway, the agent's environment and the egress proxy (issue 19, items 2 and 5).

Each attack runs for real: the real CLI in the real sandbox where the agent is the attacker, and the
real proxy (in a process of its own, as root and as an unprivileged user) where a hostile client is.
Each test fails if its wall does not hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from factory.config_sections import ModelPrice
from factory.sandbox.addresses import internal, literal
from factory.sandbox.gateway import MODEL_HOST, ModelGateway
from factory.sandbox.proxy import EgressProxy
from factory.store import ledger
from factory.store.tables import CostEntry, session_scope
from tests.fakes.anthropic import FAKE_API_KEY, Text
from tests.test_gateway import _expected
from tests.test_sandbox import bash, tool_results

pytestmark = pytest.mark.adversarial

HOST = Path(__file__).with_name("proxy_host.py")
NOBODY = 65534


# --- the agent attacks the bill and its environment (the real CLI in the real sandbox) -------------

FORGED = json.dumps(
    {"type": "result", "subtype": "success", "is_error": False, "num_turns": 1, "result": "forged",
     "total_cost_usd": -1000, "usage": {"input_tokens": 0, "output_tokens": 0},
     "modelUsage": {"claude-forged": {"inputTokens": 0, "outputTokens": 0, "costUSD": -1000}}}
)  # fmt: skip


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "unsandboxed"])
async def test_a_forged_result_line_on_the_clis_stdout_does_not_reach_the_bill(start_factory, model, sandboxed):
    # the agent's Bash walks up to the CLI (its ancestor named claude*), writes a result line with a
    # negative cost onto the CLI's own stdout (the pipe Factory reads) and kills the CLI. Unsandboxed the
    # write always lands; the sandbox may refuse it itself (an earlier wall), which the test tells apart
    attack = (
        'p=$$; while [ "$p" -gt 1 ]; do case "$(cat /proc/$p/comm)" in claude*) break;; esac; '
        "p=$(awk '{print $4}' /proc/$p/stat); done; "
        f"printf '%s\\n' '{FORGED}' > /proc/$p/fd/1 && kill -9 $p; echo WRITE-REFUSED"
    )
    scenario = f"forge-{sandboxed}"
    model.add_scenario(scenario, [bash(attack), Text("the write was refused")])
    async with start_factory(sandbox={"enabled": sandboxed}) as h:
        t = await h.create("Forge the bill", scenario)
        end = await h.wait_for(t["id"], {"done", "failed", "awaiting_input"})
        logs = (await h.api.get(f"/api/tasks/{t['id']}/logs")).json()
        with session_scope(h.runtime.engine) as s:
            rows = list(s.exec(select(CostEntry)))
        day = ledger.spent(h.runtime.engine, t["id"], None, "demo", ledger.today(h.cfg.budgets.timezone))["daily"]
    hints = [e["content"] for e in logs if e["content"].startswith("cost: $")]
    landed = bool(hints) and "(the CLI reported -1000)" in hints[-1]  # read as the CLI's result, logged as a hint
    refused = "WRITE-REFUSED" in tool_results(model, scenario)
    assert landed or (sandboxed and refused), (hints, tool_results(model, scenario))
    cost, _, _ = _expected(h, model, end["session_id"])
    assert cost > 0 and rows and all(e.cost_usd >= 0 and e.model != "claude-forged" for e in rows), rows
    assert sum(e.cost_usd for e in rows) == pytest.approx(cost, rel=1e-9)
    assert end["cost_usd"] == pytest.approx(cost, rel=1e-9) and day == pytest.approx(cost, rel=1e-9)


PLANTED = {
    "CLAUDE_CODE_LEAK": "planted-claude-code-4b1d",
    "LC_SECRET": "planted-lc-secret-9e2a",
    "DISABLE_X": "planted-disable-x-77c0",
    "ANTHROPIC_AUTH_TOKEN": "planted-auth-token-c3f1",
    "ANTHROPIC_CUSTOM_HEADERS": "x-planted: planted-header-5a5a",
}


async def test_no_real_key_and_no_lookalike_variable_reaches_the_agent(start_factory, model, monkeypatch, tmp_path):
    for k, v in PLANTED.items():  # in the worker's environment, named like the CLI's own settings
        monkeypatch.setenv(k, v)
    # and in the operator's CLI settings, which seed each task's home: the real key in its `env`
    # (the CLI would set it for itself) and a helper that prints a key
    operator = tmp_path / "operator-claude"
    operator.mkdir()
    settings = {"env": {**PLANTED, "ANTHROPIC_API_KEY": FAKE_API_KEY, "DISABLE_TELEMETRY": "1"},
                "apiKeyHelper": "echo planted-helper-8d8d", "permissions": {"deny": ["Read(./.env)"]}}  # fmt: skip
    (operator / "settings.json").write_text(json.dumps(settings))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(operator))
    scan = (
        "env; echo ENVIRON:; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | sort -u; "
        'echo SETTINGS:; cat "$CLAUDE_CONFIG_DIR/settings.json"'
    )
    model.add_scenario("envscan", [bash(scan), Text("done")])
    async with start_factory() as h:
        t = await h.create("Scan the environment", "envscan")
        done = await h.wait_for(t["id"], {"done", "failed"})
    assert done["status"] == "done", done
    seen = tool_results(model, "envscan")
    # the scan saw the environment (the stand-in and the gateway), and nothing else
    assert "ENVIRON:" in seen and "ANTHROPIC_API_KEY=sk-ant-factory-" in seen, seen
    assert f"ANTHROPIC_BASE_URL=http://{MODEL_HOST}" in seen, seen
    seeded = seen.split("SETTINGS:", 1)[1]  # the operator's preferences came, their credentials did not
    assert '"DISABLE_TELEMETRY": "1"' in seeded and "Read(./.env)" in seeded, seeded
    assert "apiKeyHelper" not in seeded and "planted-helper" not in seen
    assert FAKE_API_KEY not in seen  # the real key, in the worker's environment and config
    for name, value in PLANTED.items():
        assert value not in seen and f"{name}=" not in seen, f"{name} reached the agent"


# --- the stand-in credential outside its own run -------------------------------------------------------


class Recorder:
    """A plain TCP server on 127.0.0.1 keeping every byte each connection sent; answers `200 ok`."""

    def __init__(self) -> None:
        self.conns: list[bytearray] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> Recorder:
        self.server = await asyncio.start_server(self._on, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _on(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        self.conns.append(buf)
        answered = False
        try:
            while True:  # after the first head, whatever else arrives within 0.5 s is kept too
                data = await asyncio.wait_for(reader.read(65536), 0.5 if answered else 10)
                if not data:
                    break
                buf += data
                if not answered and b"\r\n\r\n" in buf:
                    answered = True
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        except (TimeoutError, ConnectionError):
            pass
        writer.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    r = await Recorder().start()
    yield r
    r.stop()


async def exchange(path: str, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` on a fresh connection to a unix socket and read until it is closed."""
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def _messages(key: str, auth: str = "") -> bytes:
    body = b'{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[]}'
    return (
        f"POST http://{MODEL_HOST}/v1/messages HTTP/1.1\r\nHost: {MODEL_HOST}\r\nx-api-key: {key}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def test_the_stand_in_is_worthless_outside_its_own_run(recorder):
    price = {"": ModelPrice(input_per_mtok=1, output_per_mtok=1)}
    gw = ModelGateway(f"http://127.0.0.1:{recorder.port}", "sk-ant-real-key-0d9e", None, price)
    proxy = EgressProxy()
    a, b = gw.open_run(None), gw.open_run(None)
    try:
        ch_a = await proxy.open(1, [], {(MODEL_HOST, 80): a.serve})
        ch_b = await proxy.open(2, [], {(MODEL_HOST, 80): b.serve})
        # its own run: forwarded with the real key in its place (so the refusals below can fail)
        ok = await exchange(str(ch_a.path), _messages(a.stand_in))
        assert ok.startswith(b"HTTP/1.1 200"), ok
        assert len(recorder.conns) == 1 and b"x-api-key: sk-ant-real-key-0d9e" in recorder.conns[0]
        assert a.stand_in.encode() not in recorder.conns[0]
        # replayed on another run's channel, or beside a second credential: refused, nothing forwarded
        for path, request in ((ch_b.path, _messages(a.stand_in)),
                              (ch_a.path, _messages(a.stand_in, "Authorization: Bearer other\r\n"))):  # fmt: skip
            no = await exchange(str(path), request)
            assert no.startswith(b"HTTP/1.1 401") and b'"authentication_error"' in no, no
        # after its run: the channel is gone, and the gateway refuses the stand-in even if reached
        await a.close()
        await proxy.close_channel(ch_a)
        with pytest.raises(OSError):
            await exchange(str(ch_a.path), _messages(a.stand_in))
        ch_a2 = await proxy.open(1, [], {(MODEL_HOST, 80): a.serve})
        late = await exchange(str(ch_a2.path), _messages(a.stand_in))
        assert late.startswith(b"HTTP/1.1 401"), late
        assert len(recorder.conns) == 1  # none of the refused requests reached the model server
    finally:
        await b.close()
        await proxy.close()


async def test_the_real_key_serves_only_the_messages_api(recorder):
    """Batches, files and anything reached by dot segments or escapes would be billed past the meter."""
    gw = ModelGateway(f"http://127.0.0.1:{recorder.port}", "sk-ant-real-key-0d9e", None, {})
    proxy = EgressProxy()
    run = gw.open_run(None)
    try:
        ch = await proxy.open(1, [], {(MODEL_HOST, 80): run.serve})
        for method, target in [("POST", "/v1/messages/batches"), ("GET", "/v1/files"), ("GET", "/v1/models/../files"),
                               ("GET", "/v1/models/%2e%2e/files"), ("GET", "/v1/models/x/../../files"),
                               ("POST", "/v1/messages/"), ("DELETE", "/v1/messages"), ("POST", "/v1/messages?a=%2F"),
                               ("GET", "/v1/organizations/me")]:  # fmt: skip
            request = f"{method} http://{MODEL_HOST}{target} HTTP/1.1\r\nx-api-key: {run.stand_in}\r\n\r\n"
            answer = await exchange(str(ch.path), request.encode())
            assert answer.startswith(b"HTTP/1.1 404") and b'"not_found_error"' in answer, (target, answer)
        assert recorder.conns == []
        ok = await exchange(str(ch.path), _messages(run.stand_in))  # the Messages API itself goes through
        assert ok.startswith(b"HTTP/1.1 200") and len(recorder.conns) == 1
    finally:
        await run.close()
        await proxy.close()


# --- a hostile client against the egress proxy, as root and as an unprivileged user ----------------

LIMITS = {"head_seconds": 1.0, "idle_seconds": 1.0, "total_seconds": 3.0, "max_connections": 4}


@pytest.fixture(params=["root", "unprivileged"])
async def proxy_as(request, recorder) -> AsyncIterator[tuple[str, Recorder]]:
    """The real proxy in its own process, one channel allowing exactly `127.0.0.1:<recorder>`, and the
    names the machine resolves to itself (its host name, `localhost`) on the same port."""
    allowed = [["127.0.0.1", recorder.port], ["localhost", recorder.port], [socket.gethostname(), recorder.port]]
    spec = json.dumps({"limits": LIMITS, "channels": [{"task": 1, "allowed": allowed}]})
    cmd = [sys.executable, str(HOST), spec]
    if request.param == "unprivileged":  # the system Python: the standard library is all the proxy needs
        cmd = [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "/usr/bin/python3",
            str(HOST),
            spec,
        ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)  # type: ignore[union-attr]
        path = json.loads(line)["paths"][0]
        owner = os.stat(path).st_uid
        assert owner == (0 if request.param == "root" else NOBODY)
        yield path, recorder
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def _trickle(path: str, head: bytes, byte: bytes, every: float, limit: float) -> tuple[bytes, float, bool]:
    """Send `head`, then `byte` whenever the proxy has said nothing for `every` seconds, until it closes the
    connection or `limit` seconds pass. Returns what it sent back, the seconds taken and whether it closed.

    A plain socket in a thread, not asyncio streams: when the proxy answers and closes between two bytes, the
    next send fails (EPIPE) and asyncio would then drop the answer already received; the kernel keeps it."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        started = time.monotonic()
        s.sendall(head)
        s.settimeout(every)
        got = b""
        while (seconds := time.monotonic() - started) < limit:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    s.send(byte)  # the proxy closed: what it sent before is still there to read
                continue
            except ConnectionResetError:
                return got, seconds, True
            if not chunk:
                return got, seconds, True
            got += chunk
        return got, seconds, False


def _get(target: str, extra: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: ignored.example\r\n{extra}\r\n".encode()


async def test_every_spelling_of_an_internal_address_is_refused(proxy_as):
    path, rec = proxy_as
    port = rec.port
    # sanity: the literal allow-list entry goes through (so every refusal below can fail)
    assert (await exchange(path, _get(f"http://127.0.0.1:{port}/"))).startswith(b"HTTP/1.1 200")
    assert len(rec.conns) == 1
    spellings = ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "127.0.0.01", "0x7f.1", "[::ffff:127.0.0.1]",
                 "[::ffff:7f00:1]", "[::127.0.0.1]", "[::1]", "0.0.0.0", "[::]", "localhost", "localhost.",
                 socket.gethostname(), "169.254.169.254", "[0:0:0:0:0:0:0:1]"]  # fmt: skip
    for host in spellings:
        for request in (_get(f"http://{host}:{port}/"), f"CONNECT {host}:{port} HTTP/1.1\r\n\r\n".encode()):
            answer = await exchange(path, request)
            assert answer.startswith((b"HTTP/1.1 403", b"HTTP/1.1 400")), (host, answer)
    assert len(rec.conns) == 1, [bytes(c[:80]) for c in rec.conns]  # not one of them reached the server


def test_internal_addresses_are_recognised_in_every_form():
    for text in ["127.0.0.1", "10.1.2.3", "172.17.0.2", "192.168.1.1", "100.64.0.1", "169.254.169.254", "0.0.0.0",
                 "224.0.0.1", "::1", "::", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
                 "::7f00:1", "64:ff9b::a00:1", "2002:7f00:1::", "2001:0:4136:e378:8000:63bf:80ff:fffe"]:  # fmt: skip
        assert internal(ipaddress.ip_address(text)), text
    # (an IPv4-mapped address is never global, whatever it maps: a name answering one is refused)
    for text in ["93.184.216.34", "2606:4700::1111"]:
        assert not internal(ipaddress.ip_address(text)), text
    for odd in ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "1.2.3", "0:0:0:0:0:0:0:1", "fe80::1%eth0", "a b"]:
        with pytest.raises(PermissionError):
            literal(odd)
    assert literal("example.org") is None and str(literal("10.0.0.5")) == "10.0.0.5"


async def test_one_request_per_connection_with_the_checked_host(proxy_as):
    path, rec = proxy_as
    port = rec.port
    first = f"GET http://127.0.0.1:{port}/first HTTP/1.1\r\nHost: 169.254.169.254\r\nContent-Length: 4\r\n\r\nbody"
    smuggled = "GET /admin HTTP/1.1\r\nHost: internal.example\r\n\r\n"
    answer = await exchange(path, (first + smuggled).encode())
    assert answer.startswith(b"HTTP/1.1 200"), answer
    (got,) = rec.conns
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    assert head.startswith(b"GET /first HTTP/1.1\r\n") and body == b"body", got
    hosts = [h for h in head.split(b"\r\n") if h.lower().startswith(b"host:")]
    assert hosts == [f"Host: 127.0.0.1:{port}".encode()], head  # bound to the target, not the client's
    assert b"/admin" not in got and b"internal.example" not in got
    # framing two parsers could read differently, and user information in the URL: refused
    for bad in (
        _get(f"http://127.0.0.1:{port}/", "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"),
        _get(f"http://127.0.0.1:{port}/", "Content-Length: 3\r\nContent-Length: 40\r\n"),
        _get(f"http://127.0.0.1:{port}/", " folded: header\r\n"),
        _get(f"http://user:pw@127.0.0.1:{port}/"),
        _get(f"http://127.0.0.1:{port}@evil.example/"),
    ):
        assert (await exchange(path, bad)).startswith((b"HTTP/1.1 400", b"HTTP/1.1 411")), bad
    assert len(rec.conns) == 1


async def test_connect_to_the_proxys_own_socket_is_refused(proxy_as):
    path, rec = proxy_as
    for target in (path, f"unix:{path}", f"{path}:443", f"[{path}]:443"):
        answer = await exchange(path, f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 403")), (target, answer)
    assert rec.conns == []


async def test_huge_heads_slow_heads_idle_and_endless_connections_are_cut(proxy_as):
    path, rec = proxy_as
    huge = _get(f"http://127.0.0.1:{rec.port}/", "X-Pad: " + "a" * 100_000 + "\r\n")
    assert (await exchange(path, huge)).startswith(b"HTTP/1.1 431")
    # slowloris: a head trickled a byte at a time is answered 408 at the head timeout
    head = f"GET http://127.0.0.1:{rec.port}/ HTTP/1.1\r\n".encode()
    got, seconds, closed = await asyncio.to_thread(_trickle, path, head, b"X", 0.1, 5)
    assert closed and got.startswith(b"HTTP/1.1 408") and seconds < 3, (got, seconds)
    # idle: a tunnel where nothing moves is closed at the idle timeout
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(f"CONNECT 127.0.0.1:{rec.port} HTTP/1.1\r\n\r\n".encode())
    started = time.monotonic()
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(reader.read(), 5) == b"" and time.monotonic() - started < 3
    writer.close()
    # total: a tunnel kept busy forever is still closed at the total timeout
    head = f"CONNECT 127.0.0.1:{rec.port} HTTP/1.1\r\n\r\n".encode()
    got, seconds, closed = await asyncio.to_thread(_trickle, path, head, b"x", 0.3, 8)
    assert closed and got.startswith(b"HTTP/1.1 200") and seconds < LIMITS["total_seconds"] + 2, (got, seconds)


async def test_a_run_cannot_hold_more_than_its_connections(proxy_as):
    path, rec = proxy_as
    held = []
    for _ in range(LIMITS["max_connections"]):
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(f"CONNECT 127.0.0.1:{rec.port} HTTP/1.1\r\n\r\n".encode())
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200")
        held.append(writer)
    over = await exchange(path, f"CONNECT 127.0.0.1:{rec.port} HTTP/1.1\r\n\r\n".encode())
    assert over.startswith(b"HTTP/1.1 503"), over
    for w in held:
        w.close()
    # the cap counts open connections: once the proxy has seen these close, a new one is served again
    deadline = time.monotonic() + 5
    while not (again := await exchange(path, _get(f"http://127.0.0.1:{rec.port}/"))).startswith(b"HTTP/1.1 200"):
        assert again.startswith(b"HTTP/1.1 503") and time.monotonic() < deadline, again
