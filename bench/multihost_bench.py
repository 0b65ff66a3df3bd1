"""Multi-host bench: throughput of instant tasks with one and with two `factory worker` processes on
one PostgreSQL, and Factory's CPU per task.

    python -m bench.multihost_bench                 # 20 tasks per set-up
    python -m bench.multihost_bench --tasks 10

Each set-up is what tests/test_multihost.py starts: `factory worker` processes (each its own
worker_id, workspace root and `max_concurrent_agents` slots) and a `factory api`, as separate
processes, on a fresh PostgreSQL database (tests/pg.py) and a Temporal dev server. The agent is the
real `claude` CLI against the scripted model server, answering at once (one Write, one reply). All
tasks are posted together; throughput is tasks / (last `done` - first POST). Factory CPU is the user +
system time of the worker and API processes and of the children they reaped (agents, git), from
/proc, divided by the tasks; Temporal's and PostgreSQL's CPU are not counted. On a 2-core machine the
CPU bounds the throughput, so a second worker adds little; on two machines it doubles the slots.

Prints a Markdown table and writes bench/results/multihost.json. Not part of the pytest suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from factory.search_attributes import SEARCH_ATTRIBUTES
from temporal.client import data_converter
from temporal.devserver import temporal_binary
from tests.conftest import make_remote
from tests.fakes.anthropic import FAKE_API_KEY, ScriptedModel, Text, ToolUse, cli_env
from tests.fakes.github import FakeGitHub
from tests.pg import Postgres
from tests.test_multihost import Cluster, wait_polling

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of a process (its reaped children included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2].split()
    return sum(int(v) for v in fields[11:15]) / TICKS


async def run_setup(
    workers: int, tasks: int, env: WorkflowEnvironment, pg: Postgres, gh: FakeGitHub, tmp: Path
) -> dict[str, Any]:
    remote = make_remote(tmp / "remote.git")
    address = env.client.service_client.config.target_host
    cluster = Cluster(tmp, remote, gh.url, address, pg.database(), max_concurrent_agents=2)
    procs = [cluster.worker(f"bench-{i}") for i in range(workers)]
    try:
        for p in procs:
            p.start()
        for i in range(workers):  # every worker takes agent runs before the clock starts
            await wait_polling(env.client, f"{cluster.task_queue}@bench-{i}/agents", procs)
        api = cluster.api().start()
        running = [p.proc.pid for p in procs if p.proc] + [api.proc.pid]
        cpu0 = sum(cpu_seconds(pid) for pid in running)
        with httpx.Client(base_url=api.url, timeout=30) as http:
            t0 = time.monotonic()
            ids = [
                http.post(
                    "/api/tasks?auto_run=true",
                    json={"title": f"Bench {i}", "description": "[[scenario:instant]]", "repo": "demo"},
                ).json()["id"]
                for i in range(tasks)
            ]
            pending = set(ids)
            hosts: dict[str, int] = {}
            while pending:
                for t in http.get("/api/tasks", params={"limit": 500}).json():
                    if t["id"] in pending and t["status"] in ("done", "failed"):
                        pending.discard(t["id"])
                        hosts[t["host"]] = hosts.get(t["host"], 0) + 1
                await asyncio.sleep(0.2)
            wall = time.monotonic() - t0
        cpu = sum(cpu_seconds(pid) for pid in running) - cpu0
        return {
            "workers": workers, "tasks": tasks, "wall_s": round(wall, 1),
            "tasks_per_min": round(tasks / wall * 60, 1), "cpu_s_per_task": round(cpu / tasks, 2), "by_host": hosts,
        }  # fmt: skip
    finally:
        cluster.stop()


async def main(tasks: int) -> None:
    model = ScriptedModel()
    model.start()
    model.add_scenario("instant", [[ToolUse("Write", {"file_path": "out.txt", "content": "ok\n"})], Text("Done.")])
    home = Path(tempfile.mkdtemp(prefix="bench-home-"))
    os.environ.update(cli_env(model.base_url, str(home)))
    os.environ["ANTHROPIC_API_KEY"] = FAKE_API_KEY
    subprocess.run(["git", "config", "--global", "init.defaultBranch", "main"], check=True)
    gh = FakeGitHub()
    gh.start()
    pg = Postgres().start()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES, data_converter=data_converter
    )
    results = []
    try:
        for workers in (1, 2):
            results.append(await run_setup(workers, tasks, env, pg, gh, Path(tempfile.mkdtemp(prefix="bench-mh-"))))
    finally:
        await env.shutdown()
        pg.stop()
        gh.stop()
        model.stop()
    print("| workers | tasks | wall | tasks/min | Factory CPU per task |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['workers']} | {r['tasks']} | {r['wall_s']} s | {r['tasks_per_min']} | {r['cpu_s_per_task']} s |")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "multihost.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    asyncio.run(main(parser.parse_args().tasks))
