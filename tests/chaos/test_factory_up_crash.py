"""`factory up` killed with SIGKILL (as the OOM killer would) comes back, and its tasks finish."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from factory.processes import process_start_time
from tests.conftest import remote_file, write_config
from tests.fakes.anthropic import Text, ToolUse
from tests.procs import FactoryUp, alive

pytestmark = pytest.mark.chaos


def _wait(api, task_id, statuses, timeout=90.0):
    deadline = time.monotonic() + timeout
    while True:
        t = api.get(f"/api/tasks/{task_id}").json()
        if t["status"] in statuses:
            return t
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} stayed {t['status']}: {t}")
        time.sleep(0.2)


def _dev_server_pid(data_dir):
    pid, started = (data_dir / "temporal.pid").read_text().split()
    return int(pid), started


def test_sigkilled_factory_up_restarts_and_its_running_task_finishes_once(model, github, remote, tmp_path):
    model.add_scenario(
        "up-crash",
        [
            [ToolUse("Bash", {"command": "echo working; sleep 3; echo still working"})],
            [ToolUse("Write", {"file_path": "after-up-crash.txt", "content": "resumed\n"})],
            Text("Finished after factory up came back."),
        ],
    )
    config = write_config(tmp_path, remote, github.url)
    data = tmp_path / "updata"
    up = FactoryUp(config, data).start()
    pid, started = _dev_server_pid(data)
    with up.client() as api:
        t = api.post(
            "/api/tasks?auto_run=true",
            json={"title": "Survive kill -9", "description": "[[scenario:up-crash]]", "repo": "demo"},
        ).json()
        _wait(api, t["id"], {"in_progress"})
    deadline = time.monotonic() + 60
    while not model.requests_for("up-crash") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert model.requests_for("up-crash"), "the agent never called the model"
    up.proc.send_signal(signal.SIGKILL)  # the main process only: its children must not outlive it
    up.proc.wait()
    deadline = time.monotonic() + 15
    while process_start_time(pid) == started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process_start_time(pid) != started, "the Temporal dev server outlived its factory up"

    up2 = FactoryUp(config, data)
    up2.api_port, up2.temporal_port, up2.ui_port = up.api_port, up.temporal_port, up.ui_port
    up2.url = up.url
    restarted = time.monotonic()
    up2.start()
    try:
        with up2.client() as api:
            done = _wait(api, t["id"], {"done", "failed", "cancelled"}, timeout=60)
            assert time.monotonic() - restarted < 90
            assert done["status"] == "done", done
            assert remote_file(remote, done["branch"], "after-up-crash.txt") == "resumed\n"
            assert len([c for c in github.pr_creations() if c.body["head"] == done["branch"]]) == 1
    finally:
        assert up2.stop() == 0
    leftovers = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "processes of the stopped factory are still running"


def test_a_second_factory_up_on_the_same_data_dir_is_refused(model, github, remote, tmp_path):
    config = write_config(tmp_path, remote, github.url)
    data = tmp_path / "updata"
    up = FactoryUp(config, data).start()
    try:
        second = FactoryUp(config, data)
        with pytest.raises(RuntimeError) as err:
            second.start(timeout=30)
        assert second.proc.returncode == 3
        assert "another `factory up`" in str(err.value) and str(up.proc.pid) in str(err.value)
        with up.client() as api:  # the first one is untouched
            assert api.get("/health").json()["temporal"] == "ok"
    finally:
        assert up.stop() == 0
    assert not alive(up.proc.pid)


def test_a_leftover_dev_server_is_replaced_and_a_stranger_with_its_pid_is_spared(tmp_path):
    from temporal.devserver import DevServer
    from tests.fakes.http import free_port

    data = tmp_path / "d"
    dev = DevServer(data, port=free_port(), ui_port=free_port())
    # a dev server started in a thread that ended has no parent-death signal left: simulate that orphan
    dev.proc = subprocess.Popen(dev._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    dev.pidfile.parent.mkdir(parents=True, exist_ok=True)
    dev.pidfile.write_text(f"{dev.proc.pid} {process_start_time(dev.proc.pid)}\n")
    dev.wait_ready()
    orphan = dev.proc.pid
    again = DevServer(data, port=dev.port, ui_port=dev.ui_port)
    again.start()
    try:
        assert dev.proc.wait(10) is not None and not alive(orphan)
        assert again.proc.pid != orphan
    finally:
        again.stop()
    # a pid file naming a live process that is not our server: it is left alone
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        again.pidfile.write_text(f"{stranger.pid} {process_start_time(stranger.pid)}\n")
        assert again.stop_leftover() is False
        assert stranger.poll() is None
    finally:
        os.kill(stranger.pid, signal.SIGKILL)
        stranger.wait()
