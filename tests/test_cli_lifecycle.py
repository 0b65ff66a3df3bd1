"""`factory up`, `factory worker`, `factory api` and `factory doctor` as real processes: they never hang,
stop on the first SIGTERM in every state, and say in one line why they exit.

Each test starts the real command with subprocess (as tests/procs.py does) and bounds every wait.
Temporal is the real dev server, or a TCP listener that accepts and never speaks gRPC (a Temporal
whose frontend is not healthy yet, as a loaded machine shows one).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from factory.config import FactoryConfig
from factory.preflight import PortBusy, bind
from temporal.client import TemporalUnavailable, wait_for_temporal
from temporal.devserver import DevServer
from tests.fakes.http import BackgroundServer, free_port
from tests.procs import FactoryUp, alive

ROOT = Path(__file__).resolve().parent.parent


def _config(tmp: Path, **overrides: object) -> Path:
    data: dict[str, object] = {
        "data_dir": str(tmp / "data"),
        "workspace_root": str(tmp / "ws"),
        "memory": {"enabled": False},
        "previews": {"janitor_interval_minutes": 0},
        "temporal": {"task_queue": f"lc-{tmp.name}", "id_prefix": f"{tmp.name}-"},
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "factory.cli", *args],
        cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}, start_new_session=True,
    )  # fmt: skip


def _run(
    args: list[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "factory.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return r, time.monotonic() - started


def _wait_for(what: str, log: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, f"exited {proc.returncode} before {what!r}:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"no {what!r} in {timeout} s:\n{log.read_text()[-3000:]}")


def _sigterm_and_time(proc: subprocess.Popen[bytes], log: Path, within: float = 5) -> int:
    """SIGTERM to the process alone (not its group: what it started must go because it stops it)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(within)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"still running {within} s after SIGTERM:\n{log.read_text()[-3000:]}") from None


@pytest.fixture
def silent_temporal() -> Iterator[socket.socket]:
    """A port that accepts connections and never answers: a Temporal whose frontend is not healthy yet."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s
    s.close()


@pytest.fixture
def busy() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


@pytest.mark.fast
@pytest.mark.parametrize("which", ["--api-port", "--temporal-port", "--ui-port"])
def test_factory_up_on_a_busy_port_exits_at_once_with_one_line(tmp_path, busy, which):
    ports = {"--api-port": free_port(), "--temporal-port": free_port(), "--ui-port": free_port(), which: busy}
    args = ["up", "--config", str(_config(tmp_path))] + [str(a) for kv in ports.items() for a in kv]
    r, took = _run(args, timeout=30)
    assert r.returncode == 3 and took < 5, (r.returncode, took, r.stderr)
    assert r.stderr.splitlines() == [
        f"factory up: port {busy} is busy (another process listens there); choose another with {which}"
    ]
    assert "Factory API on" not in r.stdout and not (tmp_path / "data" / "temporal.pid").exists()


@pytest.mark.fast
def test_factory_api_on_a_busy_port_exits_at_once_with_one_line(tmp_path, busy):
    r, took = _run(["api", "--config", str(_config(tmp_path)), "--port", str(busy)], timeout=30)
    assert r.returncode == 3 and took < 5, (r.returncode, took, r.stderr)
    assert r.stderr.splitlines() == [
        f"factory api: port {busy} is busy (another process listens there); choose another with --port"
    ]


@pytest.mark.parametrize("command", ["up", "worker", "api"])
def test_an_unhealthy_temporal_is_waited_for_then_named_in_one_last_line(tmp_path, silent_temporal, command):
    address = f"127.0.0.1:{silent_temporal.getsockname()[1]}"
    config = _config(tmp_path, temporal={"address": address, "connect_timeout_seconds": 3})
    extra = {"up": ["--api-port", str(free_port())], "api": ["--port", str(free_port())], "worker": []}[command]
    r, took = _run([command, "--config", str(config), *extra], timeout=30)
    assert r.returncode == 1 and took < 10, (r.returncode, took, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert f"waiting for Temporal at {address} (no answer yet)" in r.stderr
    assert lines[-1] == f"factory {command}: Temporal at {address} is not reachable and healthy in 3 s (no answer yet)"
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("command", ["up", "worker", "api"])
def test_sigterm_while_waiting_for_an_unhealthy_temporal_stops_at_once(tmp_path, silent_temporal, command):
    address = f"127.0.0.1:{silent_temporal.getsockname()[1]}"
    config = _config(tmp_path, temporal={"address": address})  # the default 60 s wait: the signal must cut it
    extra = {"up": ["--api-port", str(free_port())], "api": ["--port", str(free_port())], "worker": []}[command]
    log = tmp_path / "out.log"
    proc = _spawn([command, "--config", str(config), *extra], log)
    _wait_for(f"waiting for Temporal at {address}", log, proc, 30)
    assert _sigterm_and_time(proc, log) == 0
    assert "Traceback" not in log.read_text() and "Factory API on" not in log.read_text()


def _dev_pid(data: Path) -> int:
    return int((data / "temporal.pid").read_text().split()[0])


def test_sigterm_while_the_dev_server_starts_stops_it_too(tmp_path):
    config = _config(tmp_path)
    data, log = tmp_path / "data", tmp_path / "out.log"
    args = ["--api-port", free_port(), "--temporal-port", free_port(), "--ui-port", free_port()]
    proc = _spawn(["up", "--config", str(config), *map(str, args)], log)
    deadline = time.monotonic() + 30
    while not (data / "temporal.pid").exists():  # written the moment the server process is forked
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.005)
    dev = _dev_pid(data)
    assert _sigterm_and_time(proc, log) == 0
    text = log.read_text()
    assert "Factory API on" not in text and "Traceback" not in text, text  # it was stopped during start-up
    assert not alive(dev) and not (data / "temporal.pid").exists()


def test_a_dev_server_that_fails_to_start_is_named_in_one_line(tmp_path):
    data = tmp_path / "data"
    (data / "temporal.db").mkdir(parents=True)  # the server cannot open its database: it exits at once
    args = ["--api-port", free_port(), "--temporal-port", free_port(), "--ui-port", free_port()]
    r, took = _run(["up", "--config", str(_config(tmp_path)), *map(str, args)], timeout=60)
    assert r.returncode == 1 and took < 30, (r.returncode, took, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("factory up: the Temporal dev server exited (") and str(data / "temporal.log") in last
    assert "Traceback" not in r.stderr and "Factory API on" not in r.stdout


def _has_open(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) == str(path) for fd in fds.iterdir())
    except OSError:
        return False


def test_sigterm_while_migrating_stops_at_once_and_stops_the_dev_server(tmp_path):
    """The migration waits on its file lock (held here, as another process's migration would)."""
    data, log = tmp_path / "data", tmp_path / "out.log"
    data.mkdir()
    lock = data / "factory.db.migrate.lock"
    with open(lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        args = ["--api-port", free_port(), "--temporal-port", free_port(), "--ui-port", free_port()]
        proc = _spawn(["up", "--config", str(_config(tmp_path)), *map(str, args)], log)
        deadline = time.monotonic() + 60
        while not _has_open(proc.pid, lock):  # the migration has opened the lock file and waits for it
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        dev = _dev_pid(data)
        assert _sigterm_and_time(proc, log) == 0
    text = log.read_text()
    assert "Factory API on" not in text and "Traceback" not in text, text
    assert not alive(dev)


def test_sigterm_while_serving_stops_everything_and_the_temporal_link_uses_the_ui_port(tmp_path):
    up = FactoryUp(_config(tmp_path), tmp_path / "data").start(timeout=90)
    try:
        with up.client() as api:
            link = api.get("/api/settings/dashboard").json()["temporal_ui"]
        assert link == f"http://127.0.0.1:{up.ui_port}"
        assert httpx.get(link, timeout=10).status_code == 200  # the dev server's web UI really is there
        dev = _dev_pid(up.data_dir)
        # an open message-board stream (a dashboard left open) must not hold the shutdown up
        board = httpx.Client(base_url=up.url, timeout=httpx.Timeout(10, read=30))
        stream = board.stream("GET", "/api/messages/stream/sse").__enter__()
        assert stream.status_code == 200  # the response has begun: the server holds the connection open
        assert _sigterm_and_time(up.proc, up.log) == 0
    finally:
        if up.proc.poll() is None:
            os.killpg(up.proc.pid, signal.SIGKILL)
    assert not alive(dev) and "Factory stopped." in up.log.read_text()


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(") ", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def test_the_api_answers_while_the_worker_is_frozen_and_dies_with_factory_up(tmp_path):
    # the API is a process of its own: the worker's loop and GIL (20 agents' output) never hold it up
    up = FactoryUp(_config(tmp_path), tmp_path / "data").start(timeout=90)
    try:
        api = [p for p in _children(up.proc.pid) if b"factory.cli\x00api\x00" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(api) == 1, _children(up.proc.pid)
        os.kill(up.proc.pid, signal.SIGSTOP)  # the worker, frozen mid-loop
        try:
            with up.client() as c:
                assert c.get("/api/tasks", timeout=10).status_code == 200
        finally:
            os.kill(up.proc.pid, signal.SIGCONT)
        os.kill(up.proc.pid, signal.SIGKILL)  # a crash: the API must not live on without its worker
        up.proc.wait(10)
        deadline = time.monotonic() + 10
        while alive(api[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(api[0])
    finally:
        if up.proc.poll() is None:
            os.killpg(up.proc.pid, signal.SIGKILL)


def test_a_worker_waits_for_temporal_and_starts_once_it_is_healthy(tmp_path, silent_temporal):
    port = silent_temporal.getsockname()[1]
    config = _config(tmp_path, temporal={"address": f"127.0.0.1:{port}"})
    log = tmp_path / "worker.log"
    proc = _spawn(["worker", "--config", str(config)], log)
    dev = DevServer(tmp_path / "temporal", port=port, ui_port=free_port())
    try:
        _wait_for(f"waiting for Temporal at 127.0.0.1:{port} (no answer yet)", log, proc, 30)
        silent_temporal.close()
        dev.start()
        _wait_for(" polling ", log, proc, 60)
        # the dev server keeps its state in a write-ahead log (fewer writes per commit, each still synced)
        with contextlib.closing(sqlite3.connect(dev.db)) as db:
            assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert _sigterm_and_time(proc, log, within=15) == 0  # SIGTERM drains a running worker; nothing runs
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        dev.stop()


# -- doctor ------------------------------------------------------------------------------------------------

GOOD_GITHUB, GOOD_MODEL = "ghp-lifecycle-good-token", "sk-lifecycle-good-key"


def _stand_ins() -> Starlette:
    """GitHub's `/user` and the model API's `/v1/models`, each accepting only its good key."""

    async def user(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {GOOD_GITHUB}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse({"login": "octo"}, headers={"X-OAuth-Scopes": "repo, workflow"})

    async def models(request: Request) -> JSONResponse:
        if request.headers.get("x-api-key") != GOOD_MODEL:
            return JSONResponse({"type": "error"}, status_code=401)
        return JSONResponse({"data": [{"id": "claude-sonnet-4-5"}]})

    return Starlette(routes=[Route("/user", user), Route("/v1/models", models)])


def _snapshot(root: Path) -> dict[str, tuple[int, int]] | None:
    if not root.exists():
        return None
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("data_dir_exists", [False, True])
def test_doctor_before_factory_up_passes_checks_the_keys_and_changes_nothing(tmp_path, data_dir_exists):
    with BackgroundServer(_stand_ins()) as url:
        config = _config(tmp_path, github={"api_url": url})
        data = tmp_path / "data"
        if data_dir_exists:  # an earlier start's data dir, database included
            data.mkdir()
            (data / "factory.db").write_bytes(b"")
        before, ws_before = _snapshot(data), _snapshot(tmp_path / "ws")
        env = {"GITHUB_TOKEN": GOOD_GITHUB, "ANTHROPIC_API_KEY": GOOD_MODEL, "ANTHROPIC_BASE_URL": url}
        r, _ = _run(["doctor", "--config", str(config)], timeout=90, env=env)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "ok   ANTHROPIC_API_KEY accepted by the model API" in out
    assert "ok   GITHUB_TOKEN works as octo, scopes: repo, workflow" in out
    with socket.socket() as s:  # the default address: another program may hold it on a shared machine
        running = s.connect_ex(("127.0.0.1", 7233)) == 0
    assert ("ok   Temporal at 127.0.0.1:7233" if running else "note Temporal at 127.0.0.1:7233: not running yet") in out
    assert "MISSING" not in out and GOOD_GITHUB not in out + r.stderr and GOOD_MODEL not in out + r.stderr
    assert _snapshot(data) == before and _snapshot(tmp_path / "ws") == ws_before


def test_doctor_says_a_key_is_rejected_or_could_not_be_checked(tmp_path):
    with BackgroundServer(_stand_ins()) as url:
        config = _config(tmp_path, github={"api_url": url})
        closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the check cannot be made
        env = {"GITHUB_TOKEN": "ghp-wrong", "ANTHROPIC_API_KEY": GOOD_MODEL, "ANTHROPIC_BASE_URL": closed}
        r, _ = _run(["doctor", "--config", str(config)], timeout=90, env=env)
    assert r.returncode == 1, r.stdout
    assert "REJECTED GITHUB_TOKEN rejected (HTTP 401)" in r.stdout
    assert "note ANTHROPIC_API_KEY is set; could not check (ConnectError)" in r.stdout
    assert "ghp-wrong" not in r.stdout + r.stderr


# -- in-process: the pieces the commands share -------------------------------------------------------------


@pytest.mark.fast
def test_a_busy_port_is_found_by_binding_and_named_with_its_option(busy):
    with pytest.raises(PortBusy, match=f"port {busy} is busy .*choose another with --api-port"):
        bind("127.0.0.1", busy, "--api-port")
    sock = bind("127.0.0.1", 0, "--api-port")  # a free one is bound and handed over
    assert sock.getsockname()[1] > 0
    sock.close()


@pytest.mark.fast
async def test_the_health_wait_is_bounded_says_why_and_is_cancelled_at_once(silent_temporal, caplog):
    address = f"127.0.0.1:{silent_temporal.getsockname()[1]}"
    caplog.set_level(logging.WARNING, "factory.temporal")
    started = time.monotonic()
    with pytest.raises(TemporalUnavailable, match=r"not reachable and healthy in 1 s \(no answer yet\)"):
        await wait_for_temporal(FactoryConfig(), address, timeout=1)
    assert time.monotonic() - started < 2
    waiting = asyncio.create_task(wait_for_temporal(FactoryConfig(), address, timeout=60))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert time.monotonic() - started < 1
    refused = f"127.0.0.1:{free_port()}"
    with pytest.raises(TemporalUnavailable, match=r"\(nothing listens there yet\)"):
        await wait_for_temporal(FactoryConfig(), refused, timeout=0.5)
    assert any(f"waiting for Temporal at {refused} (nothing listens there yet)" in r.message for r in caplog.records)


@pytest.mark.fast
def test_the_sdk_s_not_healthy_error_is_named_as_such():
    """What Client.connect raises while the frontend starts (the found defect's message) reads as a wait."""
    from temporalio.service import RPCError, RPCStatusCode

    from temporal.client import _reason

    assert (
        _reason(RPCError("Frontend is not healthy yet", RPCStatusCode.UNAVAILABLE, b"")) == "frontend not healthy yet"
    )
    assert _reason(RuntimeError("Failed client connect: ... Connection refused ...")) == "nothing listens there yet"


@pytest.mark.fast
async def test_a_dev_server_that_dies_while_temporal_is_awaited_is_named_at_once(tmp_path, silent_temporal):
    # the CI failure: another process held the dev server's port, so `factory up` saw it "open", the server
    # itself had exited on the bind, and `factory up` waited 60 s for a Temporal that was never coming
    from factory.startup import or_fail
    from temporal.devserver import DevServerFailed

    dev = DevServer(tmp_path / "data", port=silent_temporal.getsockname()[1], ui_port=free_port())
    dev.data_dir.mkdir(parents=True)
    fail = "echo 'Error: listen tcp 127.0.0.1:7233: bind: address already in use' >> \"$0\"; exit 1"
    dev.proc = subprocess.Popen(["sh", "-c", fail, str(dev.data_dir / "temporal.log")])
    cfg = FactoryConfig(temporal={"address": f"127.0.0.1:{dev.port}"})
    started = time.monotonic()
    with pytest.raises(DevServerFailed) as err:
        await asyncio.wait_for(or_fail(wait_for_temporal(cfg, timeout=60), dev.watch()), 30)
    assert time.monotonic() - started < 10
    assert "exited (1): Error: listen tcp 127.0.0.1:7233: bind: address already in use" in str(err.value)
    # without a watch it is the plain wait
    assert await or_fail(asyncio.sleep(0, "ok"), None) == "ok"
