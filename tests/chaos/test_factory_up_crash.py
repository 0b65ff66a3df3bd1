"""`factory up` on one data dir: a second one is refused, and a dev server left behind is replaced.

A SIGKILLed `factory up` coming back with its tasks in every stage: tests/chaos/test_crash_stages.py.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from factory.processes import process_start_time
from tests.conftest import write_config
from tests.procs import FactoryUp, alive

pytestmark = pytest.mark.chaos


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
    from temporal.devserver import DevServer, DevServerFailed
    from tests.fakes.http import free_port

    data = tmp_path / "d"
    for attempt in range(3):
        # free_port() only finds a port free now: a test on another xdist worker may take it first
        dev = DevServer(data, port=free_port(), ui_port=free_port())
        # a dev server started in a thread that ended has no parent-death signal left: simulate that orphan
        dev.data_dir.mkdir(parents=True, exist_ok=True)
        with open(dev.data_dir / "temporal.log", "ab") as log:
            dev.proc = subprocess.Popen(dev._command(), stdout=log, stderr=log, start_new_session=True)
        dev.pidfile.write_text(f"{dev.proc.pid} {process_start_time(dev.proc.pid)}\n")
        try:
            dev.wait_ready()
            break
        except DevServerFailed:
            text = (dev.data_dir / "temporal.log").read_text(errors="replace")
            if "address already in use" not in text or attempt == 2:
                raise AssertionError(f"the dev server did not start:\n{text[-3000:]}") from None
            (dev.data_dir / "temporal.log").unlink()
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
