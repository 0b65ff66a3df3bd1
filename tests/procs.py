"""Run `factory up` and `factory worker` as real subprocesses (for restart and crash tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fakes.http import free_port

ROOT = Path(__file__).resolve().parent.parent


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "factory.cli", *args],
        cwd=ROOT,
        stdout=out,
        stderr=out,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )


class FactoryUp:
    """`factory up` with its own Temporal dev server, worker and API on free ports."""

    def __init__(self, config: Path, data_dir: Path, env: dict[str, str] | None = None):
        self.config = config
        self.data_dir = data_dir
        self.env = env
        self.api_port = free_port()
        self.temporal_port = free_port()
        self.ui_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "factory-up.log"

    def start(self, timeout: float = 90) -> FactoryUp:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.proc = _spawn(
                [
                    "up", "--config", str(self.config), "--data-dir", str(self.data_dir),
                    "--api-port", str(self.api_port), "--temporal-port", str(self.temporal_port),
                    "--ui-port", str(self.ui_port),
                ],
                self.log,
                self.env,
            )  # fmt: skip
            try:
                _wait_healthy(self.proc, self.url, self.log, timeout, "up")
                return self
            except RuntimeError as exc:
                # free_port() only found the ports free a moment ago: a test on another xdist worker (or
                # a dev server's own internal ports) may have taken one first. Then new ports, not a failure
                if attempt == 2 or self.proc.returncode is None or not _port_taken(str(exc)):
                    raise
                self.api_port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
                self.url = f"http://127.0.0.1:{self.api_port}"
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 60) -> int:
        """Ctrl-C, as a person would; returns the exit code."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


class WorkerProcess:
    """`factory worker` against an existing Temporal server."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None):
        self.config = config
        self.log = log
        self.env = env
        self.args: list[str] = []  # more options of `factory worker` (--drain, --memory-owner)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.proc = _spawn(["worker", "--config", str(self.config), *self.args], self.log, self.env)
        return self

    def kill(self) -> None:
        """SIGKILL the worker alone, as a crash would (its agents must die with it)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        _interrupt(self.proc)


def _interrupt(proc: subprocess.Popen[bytes] | None) -> None:
    """Ctrl-C, then SIGKILL to the process group if it has not exited within 30 s."""
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def pids_running(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `text`, e.g. an agent's session id: the
    CLI inside a sandbox's PID namespace outlives the wrapper whose pid Factory records by a moment."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and alive(int(entry)):
            found.append(int(entry))
    return found


def pids_gone(text: str, within: float) -> list[int]:
    """Wait up to `within` seconds for every process `pids_running(text)` finds to end; those still left."""
    deadline = time.monotonic() + within
    while (left := pids_running(text)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _port_taken(text: str) -> bool:
    return "address already in use" in text or "is busy" in text


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float, what: str) -> None:
    """Until `url`/health says Temporal is reachable; raise with the log's tail if the process dies or is late."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"factory {what} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            r = httpx.get(f"{url}/health", timeout=2)
            if r.status_code == 200 and r.json().get("temporal") == "ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"factory {what} did not become healthy:\n{log.read_text()[-3000:]}")


class ApiProcess:
    """`factory api` alone on a free port, against an existing Temporal server and database."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None):
        self.config = config
        self.log = log
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ApiProcess:
        self.proc = _spawn(["api", "--config", str(self.config), "--port", str(self.port)], self.log, self.env)
        _wait_healthy(self.proc, self.url, self.log, timeout, "api")
        return self

    def stop(self) -> None:
        _interrupt(self.proc)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)
