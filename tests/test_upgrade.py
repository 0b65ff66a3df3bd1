"""Upgrading a running Factory: the previous release stops with tasks in flight, the current code finishes them.

The previous release is the tag `v0.2.0` (`git tag v0.2.0 ab4ec8c` locally; a clean clone has the full
history, and the test falls back to the sha). Its tree is extracted with `git archive` and its
`factory up` runs with the same Python, PYTHONPATH pointed at the old tree, on a data dir where one
task waits for an answer, one agent is mid-run and one task is queued behind the full agent slot. It
is stopped as a service manager would (SIGTERM, then wait); the current `factory up` starts on the
same data and config, the question is answered through the API, and every task must finish.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import remote_file, write_config
from tests.fakes.anthropic import Text, ToolUse
from tests.fakes.http import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parent.parent
PREVIOUS_RELEASE = "v0.2.0"
PREVIOUS_SHA = "ab4ec8c"


def previous_release(dest: Path) -> Path:
    """The previous release's tree, extracted from git (the tag, else its sha)."""
    sha = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{PREVIOUS_RELEASE}^{{commit}}"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip() or PREVIOUS_SHA  # fmt: skip
    dest.mkdir()
    archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


class Up:
    """`factory up` from a given tree, on fixed ports and a given data dir."""

    def __init__(self, tree: Path, config: Path, data: Path, log: Path):
        self.tree, self.config, self.data, self.log = tree, config, data, log
        self.api_port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> Up:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "factory.cli", "up", "--config", str(self.config), "--data-dir", str(self.data),
             "--api-port", str(self.api_port), "--temporal-port", str(self.temporal_port),
             "--ui-port", str(self.ui_port)],
            cwd=self.tree, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(self.tree)},
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"factory up ({self.tree.name}) exited: {self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)  # polling the health endpoint until it answers
        raise AssertionError(f"factory up ({self.tree.name}) never became healthy: {self.log.read_text()[-3000:]}")

    def terminate(self, timeout: float = 90) -> int:
        """SIGTERM to the main process, then wait, as systemd's default stop does."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def kill_leftovers(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _task(api: httpx.Client, task_id: int) -> dict[str, Any]:
    return api.get(f"/api/tasks/{task_id}").json()


def _until(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)  # polling the API until the condition holds
    raise AssertionError(f"timed out waiting for {what}")


def test_tasks_in_flight_under_the_previous_release_finish_under_the_current_code(model, github, remote, tmp_path):
    ask = {"type": "question", "question": "Which port should /health use?", "options": ["8080", "9090"]}
    model.add_scenario(
        "up-ask",
        [
            Text(f"I need a decision.\n{json.dumps(ask)}"),
            [ToolUse("Write", {"file_path": "port.txt", "content": "9090\n"})],
            Text("done"),
        ],
    )
    model.add_scenario(
        "up-busy",
        [
            [ToolUse("Bash", {"command": "sleep 8; echo worked"})],
            [ToolUse("Write", {"file_path": "busy.txt", "content": "ok\n"})],
            Text("done"),
        ],
    )
    model.add_scenario("up-queued", [[ToolUse("Write", {"file_path": "queued.txt", "content": "ok\n"})], Text("done")])
    config = write_config(tmp_path, remote, github.url, max_concurrent_agents=1)
    data = tmp_path / "data"
    data.mkdir()
    old = Up(previous_release(tmp_path / "previous"), config, data, tmp_path / "old-up.log")
    new = Up(ROOT, config, data, tmp_path / "new-up.log")
    try:
        for attempt in range(3):
            try:  # v0.2.0 did not yet wait for its dev server to be healthy: under load it can exit at start
                old.start()
                break
            except AssertionError:
                old.kill_leftovers()
                if attempt == 2:
                    raise
                old = Up(old.tree, config, data, old.log)
        with httpx.Client(base_url=old.url, timeout=30) as api:

            def create(title: str, scenario: str) -> int:
                body = {"title": title, "description": f"[[scenario:{scenario}]]", "repo": "demo"}
                r = api.post("/api/tasks?auto_run=true", json=body)
                assert r.status_code in (200, 201), r.text
                return r.json()["id"]

            asked = create("Pick a port", "up-ask")
            _until("the question", lambda: _task(api, asked)["status"] == "awaiting_input")
            busy = create("Work a while", "up-busy")
            _until("the busy agent to start", lambda: model.requests_for("up-busy"))
            queued = create("Wait for a slot", "up-queued")
            # its worktree is prepared (the branch is recorded), so its agent run waits for the slot
            _until("the queued task's worktree", lambda: _task(api, queued)["branch"])
        # in flight at the stop: a question waiting, an agent mid-run, a task waiting for the one agent slot
        assert not model.requests_for("up-queued") and len(model.requests_for("up-busy")) == 1
        code = old.terminate()
        assert code in (0, 130, -signal.SIGTERM), f"the previous release exited {code}: {old.log.read_text()[-2000:]}"
        new.start()
        with httpx.Client(base_url=new.url, timeout=30) as api:
            qs = _until("the pending question", lambda: api.get(f"/api/tasks/{asked}/questions").json())
            r = api.post(f"/api/tasks/{asked}/answer", json={"answer": "9090", "question_id": qs[-1]["id"]})
            assert r.status_code in (200, 202), r.text
            for task_id in (asked, busy, queued):
                t = _until(
                    f"task #{task_id} to finish",
                    lambda tid=task_id: (t := _task(api, tid))["status"] in ("done", "failed") and t,
                    120,
                )
                assert t["status"] == "done", t
            branches = {tid: _task(api, tid)["branch"] for tid in (asked, busy, queued)}
        assert remote_file(remote, branches[asked], "port.txt") == "9090\n"
        assert remote_file(remote, branches[busy], "busy.txt") == "ok\n"
        assert remote_file(remote, branches[queued], "queued.txt") == "ok\n"
        assert "9090" in model.requests_for("up-ask")[1].last_user_text  # the answer resumed the session
        assert new.terminate() in (0, 130)
    finally:
        old.kill_leftovers()
        new.kill_leftovers()
