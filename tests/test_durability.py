"""Crashes and restarts: a killed worker, and `factory up` stopped and started again."""

from __future__ import annotations

import subprocess

from sqlmodel import Session, select

from factory.store.tables import AgentRun
from tests.conftest import remote_file, write_config
from tests.fakes.anthropic import Text, ToolUse
from tests.procs import FactoryUp, WorkerProcess, alive


async def test_killed_worker_mid_run_resumes_without_a_second_pr(start_factory, model, github, temporal_env, tmp_path):
    model.add_scenario(
        "crash",
        [
            [ToolUse("Bash", {"command": "echo working; sleep 4; echo still working"})],
            [ToolUse("Write", {"file_path": "after-crash.txt", "content": "resumed\n"})],
            Text("Finished after the restart."),
        ],
    )
    address = temporal_env.client.service_client.config.target_host
    async with start_factory(worker=False, temporal={"address": address}) as h:
        config = h.cfg.config_file
        first = WorkerProcess(config, tmp_path / "worker1.log").start()
        second = None
        try:
            t = await h.create("Survive a crash", "crash")

            def running():
                with Session(h.runtime.engine) as s:
                    return s.exec(select(AgentRun).where(AgentRun.task_id == t["id"], AgentRun.pid.is_not(None))).first()

            run = await h.until(running, timeout=60, what="the agent to start")
            await h.until(lambda: model.requests_for("crash"), what="the model to be called")
            first.kill()
            await h.until(lambda: not alive(run.pid), timeout=10, what="the agent to die with its worker")
            assert (await h.task(t["id"]))["status"] == "in_progress"
            second = WorkerProcess(config, tmp_path / "worker2.log").start()
            done = await h.wait_for(t["id"], {"done", "failed"}, timeout=120)
            assert done["status"] == "done", done["error"]
            assert remote_file(h.remote, done["branch"], "after-crash.txt") == "resumed\n"
            assert len([c for c in github.pr_creations() if c.body["head"] == done["branch"]]) == 1
            # the retried attempt resumed the CLI session if the killed CLI had saved it, else began a new one
            # (never the same id afresh: a thread of the killed CLI may still be writing that id's file)
            sessions = [r.session_id for r in model.requests_for("crash")]
            assert sessions[-1] == done["session_id"] and len(set(sessions)) <= 2
            await h.settled(t["id"])
        finally:
            first.stop()
            if second:
                second.stop()


def test_restarting_factory_up_keeps_tasks_and_runs_a_queued_one(model, github, remote, tmp_path):
    model.add_scenario("restart", [[ToolUse("Write", {"file_path": "r.txt", "content": "ok\n"})], Text("done")])
    config = write_config(tmp_path, remote, github.url)
    data = tmp_path / "updata"
    up = FactoryUp(config, data).start()
    try:
        with up.client() as api:
            a = api.post("/api/tasks?auto_run=true", json={"title": "First", "description": "[[scenario:restart]]", "repo": "demo"}).json()
            b = api.post("/api/tasks", json={"title": "Second", "description": "[[scenario:restart]]", "repo": "demo"}).json()
            _wait(api, a["id"], "done")
    finally:
        code = up.stop()
    assert code == 0
    assert not alive(up.proc.pid)
    leftovers = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "processes of the stopped factory are still running"
    up2 = FactoryUp(config, data).start()
    try:
        with up2.client() as api:
            tasks = {t["id"]: t for t in api.get("/api/tasks").json()}
            assert tasks[a["id"]]["status"] == "done" and tasks[b["id"]]["status"] == "queued"
            assert api.post(f"/api/tasks/{b['id']}/run").status_code == 202
            done = _wait(api, b["id"], "done")
            assert remote_file(remote, done["branch"], "r.txt") == "ok\n"
    finally:
        assert up2.stop() == 0


def _wait(api, task_id, status, timeout=90):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = api.get(f"/api/tasks/{task_id}").json()
        if t["status"] == status:
            return t
        if t["status"] in ("failed", "cancelled"):
            raise AssertionError(t)
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} is {t['status']}, not {status}")
