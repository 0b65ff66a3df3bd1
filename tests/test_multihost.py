"""Factory on several hosts: two `factory worker` processes and a `factory api`, each its own
process, on one PostgreSQL and one Temporal server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from factory.config import load_config
from factory.memory.records import MemoryRecord
from factory.specs import task_workflow_id
from temporal.client import tls_of
from temporal.memory import RemoteMemory
from tests.conftest import remote_file, write_config
from tests.fakes.anthropic import Text, ToolUse
from tests.procs import ROOT, ApiProcess, WorkerProcess
from tests.test_workflows import role_of


class Cluster:
    """Config files for an API and workers sharing one task queue, database and Temporal."""

    def __init__(self, tmp: Path, remote: Path, github_url: str, address: str, database_url: str, **overrides: Any):
        base = yaml.safe_load(
            write_config(
                tmp, remote, github_url, database_url=database_url, temporal={"address": address}, **overrides
            ).read_text()
        )
        self.tmp = tmp
        self.base = base
        self.task_queue = base["temporal"]["task_queue"]
        self.api_config = self._write("api", {})
        self.procs: list[Any] = []

    def _write(self, name: str, changes: dict[str, Any]) -> Path:
        data = yaml.safe_load(yaml.safe_dump(self.base))
        for key, value in changes.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) else value
        home = self.tmp / name
        home.mkdir(exist_ok=True)
        data["data_dir"] = str(home / "data")
        path = home / "config.yml"
        path.write_text(yaml.safe_dump(data))
        return path

    def worker(self, worker_id: str, *args: str, **changes: Any) -> WorkerProcess:
        config = self._write(
            worker_id,
            {"temporal": {"worker_id": worker_id}, "workspace_root": str(self.tmp / worker_id / "ws"), **changes},
        )
        proc = WorkerProcess(config, self.tmp / f"{worker_id}.log")
        proc.args = list(args)
        self.procs.append(proc)
        return proc

    def api(self) -> ApiProcess:
        proc = ApiProcess(self.api_config, self.tmp / "api.log")
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


async def pollers(
    client: Client, queue: str, kind: TaskQueueType.ValueType = TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
) -> int:
    r = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind)
    )
    return len(r.pollers)


async def wait_polling(
    client: Client,
    queue: str,
    procs: list[WorkerProcess],
    timeout: float = 60,
    kind: TaskQueueType.ValueType = TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
) -> None:
    deadline = time.monotonic() + timeout
    while not await pollers(client, queue, kind):
        for p in procs:
            assert p.proc is not None and p.proc.poll() is None, f"a worker exited:\n{p.log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no worker polls {queue}"
        await asyncio.sleep(0.2)


async def activity_queues(client: Client, workflow_id: str) -> set[str]:
    """The task queues a workflow's activities were scheduled on."""
    queues = set()
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            queues.add(event.activity_task_scheduled_event_attributes.task_queue.name)
    return queues


async def wait_done(api: httpx.Client, task_id: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        t = api.get(f"/api/tasks/{task_id}").json()
        if t["status"] in ("done", "failed", "cancelled"):
            return t
        assert time.monotonic() < deadline, f"task {task_id} stayed {t['status']}"
        await asyncio.sleep(0.25)


def create(http: httpx.Client, title: str, scenario: str) -> int:
    r = http.post(
        "/api/tasks?auto_run=true", json={"title": title, "description": f"[[scenario:{scenario}]]", "repo": "demo"}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_ten_tasks_spread_over_two_workers_on_postgres_sharing_memory(
    postgres,
    temporal_env,
    model,
    github,
    remote,
    tmp_path,
):
    model.add_scenario("spread", [[ToolUse("Write", {"file_path": "spread.txt", "content": "ok\n"})], Text("Spread.")])
    address = temporal_env.client.service_client.config.target_host
    cluster = Cluster(
        tmp_path, remote, github.url, address, postgres.database(), max_concurrent_agents=2, memory={"enabled": True}
    )
    client = temporal_env.client
    cfg = load_config(cluster.api_config)
    try:
        # both start at the same moment against the fresh database: both must come up (one migrates);
        # host-a owns the embedded memory store and serves it, host-b and the API reach it over Temporal
        a, b = cluster.worker("host-a", "--memory-owner"), cluster.worker("host-b")
        a.start(), b.start()
        for host in ("host-a", "host-b"):
            await wait_polling(client, f"{cluster.task_queue}@{host}/agents", [a, b])
        await wait_polling(client, f"{cluster.task_queue}/memory", [a, b], kind=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
        api = cluster.api().start()
        with api.client() as http:
            seed = create(http, "Teach the shared lesson", "spread")
            assert (await wait_done(http, seed))["status"] == "done"
            await client.get_workflow_handle(task_workflow_id(cfg, seed)).result()  # its memory is stored
            ids = [create(http, f"Spread {i}", "spread") for i in range(9)]
            done = [http.get(f"/api/tasks/{seed}").json()] + [await wait_done(http, i) for i in ids]
            for i in ids:
                await client.get_workflow_handle(task_workflow_id(cfg, i)).result()
            recalled = {
                t["id"]: [x["content"] for x in http.get(f"/api/tasks/{t['id']}/logs").json() if x["kind"] == "memory"]
                for t in done[1:]
            }
            listed = http.get("/api/memory", params={"limit": 50, "repo": "demo"})
        assert [t["status"] for t in done] == ["done"] * 10, [t["error"] for t in done]
        assert {t["host"] for t in done} == {"host-a", "host-b"}
        for t in done:
            assert remote_file(remote, t["branch"], "spread.txt") == "ok\n"
            # every host-bound step of the task ran on the host that holds its worktree (its cleanup too, unless
            # the worker holding its last workflow task was that host and did it there: patch clean-up-here)
            host_bound = {q for q in await activity_queues(client, task_workflow_id(cfg, t["id"])) if "@" in q}
            assert f"{cluster.task_queue}@{t['host']}/agents" in host_bound
            assert host_bound <= {f"{cluster.task_queue}@{t['host']}", f"{cluster.task_queue}@{t['host']}/agents"}
            worktrees = cluster.tmp / t["host"] / "ws" / "worktrees"
            assert worktrees.is_dir() and not (worktrees / f"task-{t['id']}").exists()  # made there, removed
            assert len([c for c in github.pr_creations() if c.body["head"] == t["branch"]]) == 1
        # the seed task's memory, stored from one host, was recalled by the tasks of both hosts
        for t in done[1:]:
            assert any("Teach the shared lesson" in text for text in recalled[t["id"]]), (t["host"], recalled[t["id"]])
        # every task's memory reached the one store, whichever worker stored it; the API lists them
        assert listed.status_code == 200, listed.text
        assert {m["task_id"] for m in listed.json()} >= {t["id"] for t in done}
    finally:
        cluster.stop()


async def test_a_lost_host_s_task_is_prepared_again_on_the_other_and_ends_done(
    postgres, temporal_env, model, github, remote, tmp_path
):
    def first_turn(rec: Any) -> Any:
        if "This task moved to another host" in rec.first_user_text:
            return ToolUse("Write", {"file_path": "moved.txt", "content": "finished elsewhere\n"})
        return ToolUse("Bash", {"command": "echo working; sleep 120"})  # its host dies during this

    model.add_scenario("failover", [first_turn, Text("Finished on the other host.")])
    address = temporal_env.client.service_client.config.target_host
    cluster = Cluster(
        tmp_path, remote, github.url, address, postgres.database(), max_concurrent_agents=1,
        workers={"failover_after_seconds": 3},
    )  # fmt: skip
    client = temporal_env.client
    try:
        workers = {"host-a": cluster.worker("host-a"), "host-b": cluster.worker("host-b")}
        for w in workers.values():
            w.start()
        for host in workers:
            await wait_polling(client, f"{cluster.task_queue}@{host}/agents", list(workers.values()))
        api = cluster.api().start()
        with api.client() as http:
            task_id = create(http, "Survive a lost host", "failover")
            deadline = time.monotonic() + 60
            while not model.requests_for("failover"):
                assert time.monotonic() < deadline, "the agent never called the model"
                await asyncio.sleep(0.1)
            before = http.get(f"/api/tasks/{task_id}").json()
            lost, survivor = before["host"], ({"host-a", "host-b"} - {before["host"]}).pop()
            workers[lost].kill()  # for good: it never comes back
            done = await wait_done(http, task_id, timeout=150)
        assert done["status"] == "done", done["error"]
        assert done["host"] == survivor and done["branch"] == before["branch"]
        assert remote_file(remote, done["branch"], "moved.txt") == "finished elsewhere\n"
        assert len([c for c in github.pr_creations() if c.body["head"] == done["branch"]]) == 1
        # the new session was told it moved (its old session stayed on the lost host)
        first_prompts = [r.first_user_text for r in model.requests_for("failover")]
        assert any("This task moved to another host" in p and lost in p for p in first_prompts)
        queues = await activity_queues(client, task_workflow_id(load_config(cluster.api_config), task_id))
        assert f"{cluster.task_queue}@{survivor}/agents" in queues
    finally:
        cluster.stop()


async def test_a_draining_worker_takes_no_new_run_and_exits_when_its_run_ends(
    postgres, temporal_env, model, github, remote, tmp_path
):
    model.add_scenario(
        "drain",
        [
            [ToolUse("Bash", {"command": "echo working; sleep 5"})],
            [ToolUse("Write", {"file_path": "drained.txt", "content": "ok\n"})],
            Text("Done."),
        ],
    )
    model.add_scenario("after-drain", [[ToolUse("Write", {"file_path": "later.txt", "content": "ok\n"})], Text("Ok.")])
    address = temporal_env.client.service_client.config.target_host
    cluster = Cluster(tmp_path, remote, github.url, address, postgres.database(), max_concurrent_agents=2)
    client = temporal_env.client
    try:
        a = cluster.worker("host-a")
        a.start()
        await wait_polling(client, f"{cluster.task_queue}@host-a/agents", [a])
        api = cluster.api().start()
        with api.client() as http:
            first = create(http, "Finish while draining", "drain")
            deadline = time.monotonic() + 60
            while not model.requests_for("drain"):
                assert time.monotonic() < deadline, "the agent never called the model"
                await asyncio.sleep(0.1)
            drain = subprocess.Popen(
                [sys.executable, "-m", "factory.cli", "worker", "--drain", "--config", str(a.config)],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            await wait_log(a.log, "draining")
            second = create(http, "Arrive during the drain", "after-drain")
            b = cluster.worker("host-b")
            b.start()
            out, _ = await asyncio.to_thread(drain.communicate, timeout=120)
            assert drain.returncode == 0, out
            assert a.proc is not None and a.proc.poll() is not None, "the drained worker is still running"
            # it exited only once its run had ended and the task was done
            one = http.get(f"/api/tasks/{first}").json()
            assert one["status"] == "done" and one["host"] == "host-a", one
            two = await wait_done(http, second)
        assert two["status"] == "done" and two["host"] == "host-b", two
        assert remote_file(remote, one["branch"], "drained.txt") == "ok\n"
        assert a.proc.returncode == 0
    finally:
        cluster.stop()


async def wait_log(log: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {log}"
        await asyncio.sleep(0.1)


async def test_memory_without_an_owner_is_unavailable_not_stuck(temporal_env, factory_config):
    cfg = factory_config(memory={"enabled": True})
    memory = RemoteMemory(cfg, temporal_env.client, timeout=1)
    started = time.monotonic()
    assert await memory.recall_section("t", "d", "demo") == ""
    assert time.monotonic() - started < 10
    assert not memory.available
    again = time.monotonic()
    assert await memory.add(MemoryRecord(repo="demo", title="t")) is None  # the owner is left alone a while
    assert time.monotonic() - again < 0.5
    assert (await memory.health())["status"] == "degraded"


def test_temporal_tls_and_api_key_settings(factory_config, tmp_path, monkeypatch):
    assert tls_of(factory_config()) is False  # the dev server speaks plain gRPC
    (tmp_path / "c.pem").write_bytes(b"CERT")
    (tmp_path / "k.pem").write_bytes(b"KEY")
    tls = tls_of(
        factory_config(temporal={"tls_cert_file": str(tmp_path / "c.pem"), "tls_key_file": str(tmp_path / "k.pem")})
    )
    assert tls.client_cert == b"CERT" and tls.client_private_key == b"KEY"
    monkeypatch.setenv("TEMPORAL_API_KEY", "cloud-key-123")
    cfg = factory_config()
    assert tls_of(cfg) and cfg.temporal_api_key.get_secret_value() == "cloud-key-123"
    assert "cloud-key-123" in cfg.secret_values()  # scrubbed like every secret


async def test_a_workflow_step_on_a_lost_host_moves_with_the_pushed_branch(
    postgres, temporal_env, model, github, remote, tmp_path
):
    def first_turn(rec: Any) -> Any:
        agent = (role_of(rec) or ("?", 0))[0]
        if agent == "coder":
            return ToolUse("Write", {"file_path": "first.txt", "content": "from the first step\n"})
        if "This task moved to another host" in rec.first_user_text:
            return ToolUse("Bash", {"command": "echo 'from the moved step' > second.txt"})  # devops has no Write
        return ToolUse("Bash", {"command": "echo deploying; sleep 120"})  # its host dies during this

    scenario = f"relay-{uuid.uuid4().hex[:6]}"
    model.add_scenario(scenario, [first_turn, Text("Step done.")])
    relay = {"relay": {"steps": [{"agent": "coder", "output": "code"}, {"agent": "devops", "input": "code"}]}}
    address = temporal_env.client.service_client.config.target_host
    cluster = Cluster(
        tmp_path, remote, github.url, address, postgres.database(), max_concurrent_agents=1,
        workers={"failover_after_seconds": 3}, workflows=relay,
    )  # fmt: skip
    client = temporal_env.client
    try:
        workers = {"host-a": cluster.worker("host-a"), "host-b": cluster.worker("host-b")}
        for w in workers.values():
            w.start()
        for host in workers:
            await wait_polling(client, f"{cluster.task_queue}@{host}/agents", list(workers.values()))
        api = cluster.api().start()
        with api.client() as http:
            body = {
                "name": "relay",
                "title": f"Relay {scenario}",
                "description": f"[[scenario:{scenario}]]",
                "repo": "demo",
            }
            run = http.post("/api/workflows", json=body).json()
            deadline = time.monotonic() + 90
            while not [r for r in model.requests_for(scenario) if (role_of(r) or ("",))[0] == "devops"]:
                assert time.monotonic() < deadline, "the second step never started"
                await asyncio.sleep(0.1)
            step = next(
                t
                for t in http.get("/api/tasks").json()
                if t["workflow_run_id"] == run["id"] and t["agent_type"] == "devops"
            )
            lost, survivor = step["host"], ({"host-a", "host-b"} - {step["host"]}).pop()
            workers[lost].kill()
            deadline = time.monotonic() + 150
            while (done := http.get(f"/api/workflows/{run['id']}").json())["status"] not in ("completed", "failed"):
                assert time.monotonic() < deadline, done
                await asyncio.sleep(0.25)
            moved = http.get(f"/api/tasks/{step['id']}").json()
        assert done["status"] == "completed", done
        assert moved["host"] == survivor and moved["status"] == "done", moved
        # the moved step started from the branch as the first step pushed it, and added to it
        assert remote_file(remote, done["branch"], "first.txt") == "from the first step\n"
        assert remote_file(remote, done["branch"], "second.txt") == "from the moved step\n"
        told = [r.first_user_text for r in model.requests_for(scenario) if "This task moved" in r.first_user_text]
        assert told and "first.txt" in told[0]  # what the branch already held
        assert len([c for c in github.pr_creations() if c.body["head"] == done["branch"]]) == 1
    finally:
        cluster.stop()
