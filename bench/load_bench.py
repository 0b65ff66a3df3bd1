"""Load bench: many scripted agents streaming output at once while people poll the API.

`python -m bench.load_bench [--agents 20] [--turns 30]` starts a real `factory up` (dev server,
worker and API in one process tree, as a user runs it), the scripted model and the stand-in GitHub
in a child process, and runs `--agents` tasks at once (`max_concurrent_agents` = agents). Each
agent runs `--turns` quick Bash turns that print their wall-clock time (`T=<epoch>`), so the CLI
streams several stream-json lines per turn for all agents together. Meanwhile a poller reads
`/api/tasks` and every task's `/logs` with a cursor, as the dashboard does.

Reported: API latency (p50/p95/p99), log lines per second, log lag (the time from the agent
printing `T=<epoch>` to the poller first seeing that line through the API; includes up to one
poll interval; and the same through each task's live stream, `GET /api/events?task_id=`, as the task
page reads it), heartbeat timeouts and retried agent attempts in the workflows' histories
(target 0), lost lines (each agent prints `turns` x 5 `T=` lines; every one must reach the API),
whether every task ended done, and where the CPU went while the agents ran: Factory's own
process (worker + API) and the Temporal server, against the whole machine, and the nice value the
agents' CLIs ran at. Results go to bench/results/load.json and stdout (bench/LOAD.md is written by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "load"
_T = re.compile(r"T=(\d+\.\d+)")


def serve_fakes(turns: int) -> None:
    """Child-process mode: the scripted model and stand-in GitHub; print their URLs; run until stdin closes."""
    from tests.fakes.anthropic import ScriptedModel, Text, ToolUse
    from tests.fakes.github import FakeGitHub

    model = ScriptedModel()
    # five tool calls a turn: each is a tool_use and a tool_result line in the stream
    script: list[Any] = [[ToolUse("Bash", {"command": "date +T=%s.%N; seq 1 5"}) for _ in range(5)] for _ in range(turns)]
    script += [[ToolUse("Write", {"file_path": "load.txt", "content": "done\n"})], Text("Load run finished.")]
    model.add_scenario(SCENARIO, script)
    model.start()
    gh = FakeGitHub()
    gh.start()
    print(json.dumps({"model_url": model.base_url, "github_url": gh.url}), flush=True)
    try:
        sys.stdin.read()
    finally:
        gh.stop()
        model.stop()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Poller:
    """Reads the task list and each task's logs with a cursor, timing every call."""

    def __init__(self, api: httpx.AsyncClient, ids: list[int], interval: float):
        self.api = api
        self.ids = ids
        self.interval = interval
        self.cursor = dict.fromkeys(ids, 0)
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.store_lags: list[float] = []  # printed by the agent → stored by Factory
        self.read_lags: list[float] = []  # stored by Factory → seen through the API
        self.lines = 0
        self.stamps: dict[int, set[str]] = {tid: set() for tid in ids}  # the T= values each task's log showed
        self.errors = 0
        self.finished: dict[int, dict[str, Any]] = {}

    async def _get(self, url: str, **params: Any) -> Any:
        t0 = time.perf_counter()
        r = await self.api.get(url, params=params)
        self.latencies.append(time.perf_counter() - t0)
        if r.status_code != 200:
            self.errors += 1
            return None
        return r.json()

    async def run(self) -> None:
        while len(self.finished) < len(self.ids):
            tasks = await self._get("/api/tasks") or []
            for t in tasks:
                if t["id"] in self.cursor and t["status"] in ("done", "failed", "cancelled"):
                    self.finished[t["id"]] = t
            await asyncio.gather(*(self._logs(tid) for tid in self.ids))  # one dashboard per task, at once
            await asyncio.sleep(self.interval)

    async def _logs(self, tid: int) -> None:
        logs = await self._get(f"/api/tasks/{tid}/logs", since=self.cursor[tid], limit=500)
        now = time.time()
        for entry in logs or []:
            self.cursor[tid] = max(self.cursor[tid], entry["id"])
            self.lines += 1
            m = _T.search(entry.get("content") or "")
            if m:
                self.stamps[tid].add(m.group(1))
                stored = datetime.fromisoformat(entry["created_at"])
                stored_s = (stored if stored.tzinfo else stored.replace(tzinfo=UTC)).timestamp()
                self.lags.append(now - float(m.group(1)))
                self.store_lags.append(stored_s - float(m.group(1)))
                self.read_lags.append(now - stored_s)


class LiveReader:
    """Each task's page as the dashboard reads it: `GET /api/events?task_id=` (server-sent events), one per task.

    Records, for each `T=` line, the time from the agent printing it to its `log` event arriving: the lag a
    person watching the task's page sees (no client poll in it; the stream's own wake-up is in it).
    """

    def __init__(self, api: httpx.AsyncClient, ids: list[int]):
        self.api = api
        self.ids = ids
        self.lags: list[float] = []
        self.seen: set[tuple[int, str]] = set()

    async def run(self) -> None:
        await asyncio.gather(*(self._read(tid) for tid in self.ids))

    async def _read(self, tid: int) -> None:
        event = ""
        timeout = httpx.Timeout(60, read=None)
        async with self.api.stream("GET", "/api/events", params={"task_id": tid}, timeout=timeout) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                    if event == "end":
                        return
                elif line.startswith("data:") and event == "log":
                    m = _T.search(json.loads(line[5:]).get("content") or "")
                    if m and (tid, m.group(1)) not in self.seen:
                        self.seen.add((tid, m.group(1)))
                        self.lags.append(time.time() - float(m.group(1)))


def _self_cpu(pid: int) -> float:
    """CPU seconds a process has used itself (all its threads, not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    tck = os.sysconf("SC_CLK_TCK")
    return (sum(vals[:8]) - idle) / tck, sum(vals[:8]) / tck


def _agent_nice(under: str) -> list[str]:
    """Nice values of this run's agent CLIs (working under `under`): the process's and its scheduling group's."""
    out = subprocess.run(["ps", "-eo", "pid=,ni=,args="], capture_output=True, text=True).stdout
    seen = set()
    for line in out.splitlines():
        pid, ni, args = line.split(None, 2)
        if "claude" in args and " -p " in args:
            try:
                if not os.readlink(f"/proc/{pid}/cwd").startswith(under):
                    continue
                group = Path(f"/proc/{pid}/autogroup").read_text().split()[-1]
            except (OSError, IndexError):
                continue  # ended meanwhile
            seen.add(f"{ni}/group {group}")
    return sorted(seen)


def _api_pid(factory_pid: int) -> int | None:
    """`factory up`'s API process (a child running `factory.cli api`), or None (an older tree: one process)."""
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and b"factory.cli\x00api\x00" in (d / "cmdline").read_bytes():
                if int((d / "stat").read_text().rsplit(") ", 1)[1].split()[1]) == factory_pid:
                    return int(d.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


class CpuMeter:
    """Factory's process, the Temporal server and the machine, between start() and stop()."""

    def __init__(self, factory_pid: int, temporal_pid: int | None, under: str, api_pid: int | None = None):
        self.under = under
        self.pids = {"factory": factory_pid, "factory api": api_pid, "temporal": temporal_pid}
        self.nice: set[int] = set()

    def start(self) -> None:
        self.t0 = {k: _self_cpu(p) for k, p in self.pids.items() if p}
        self.m0 = _machine_cpu()

    def sample(self) -> None:
        self.nice.update(_agent_nice(self.under))

    def stop(self) -> dict[str, Any]:
        used = {k: round(_self_cpu(p) - self.t0[k], 2) for k, p in self.pids.items() if p}
        busy, total = (b - a for a, b in zip(self.m0, _machine_cpu(), strict=True))
        own = sum(used.values())
        return {
            "cpu_s": used, "machine_busy_s": round(busy, 1), "machine_total_s": round(total, 1),
            "factory_share_of_busy": round(own / busy, 3) if busy else None,
            "agent_nice": sorted(self.nice),
        }  # fmt: skip


async def history_faults(address: str, namespace: str, workflow_ids: list[str]) -> dict[str, int]:
    """Heartbeat timeouts and retried agent attempts, read from the workflows' histories."""
    from temporalio.api.enums.v1 import EventType, TimeoutType
    from temporalio.client import Client

    from temporal.client import data_converter

    client = await Client.connect(address, namespace=namespace, data_converter=data_converter)
    timeouts = retries = 0
    for wid in workflow_ids:
        async for event in client.get_workflow_handle(wid).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
                if event.activity_task_timed_out_event_attributes.failure.timeout_failure_info.timeout_type == (
                    TimeoutType.TIMEOUT_TYPE_HEARTBEAT
                ):
                    timeouts += 1
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                if event.activity_task_started_event_attributes.attempt > 1:
                    retries += 1
    return {"heartbeat_timeouts": timeouts, "retried_attempts": retries}


def _temporal_pid(data: Path) -> int | None:
    try:
        return int((data / "temporal.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def _sample(meter: CpuMeter) -> None:
    while True:
        await asyncio.to_thread(meter.sample)
        await asyncio.sleep(2)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from tests.conftest import make_remote, write_config
    from tests.fakes.anthropic import FAKE_API_KEY, cli_env
    from tests.procs import FactoryUp

    tmp = Path(tempfile.mkdtemp(prefix="factory-load-bench-"))
    tmp.chmod(0o711)  # as root the sandbox runs as sandbox.uid, which needs search permission here
    fakes = subprocess.Popen(
        [sys.executable, "-m", "bench.load_bench", "--serve-fakes", "--turns", str(args.turns)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert fakes.stdout is not None
    urls = json.loads(fakes.stdout.readline())
    subprocess.run(["git", "config", "--global", "init.defaultBranch", "main"], check=True)
    remote = make_remote(tmp / "remote.git")
    config = write_config(
        tmp, remote, urls["github_url"], max_concurrent_agents=args.agents,
        agent_timeout_minutes=15, agent_activity_timeout_minutes=5,
        temporal={"heartbeat_timeout_seconds": 30},
        sandbox={"limits": {
            **({"nice": args.agent_nice} if args.agent_nice is not None else {}),
            **({"agents_cpu_weight": args.agents_cpu_weight or None} if args.agents_cpu_weight is not None else {}),
        }},
    )  # fmt: skip
    env = {**cli_env(urls["model_url"], str(tmp / "home")), "ANTHROPIC_API_KEY": FAKE_API_KEY}
    up = FactoryUp(config, tmp / "data", env=env).start(timeout=180)
    try:
        async with httpx.AsyncClient(base_url=up.url, timeout=60) as api:
            started = time.monotonic()
            ids = []
            for i in range(args.agents):
                body = {"title": f"Load {i}", "description": f"[[scenario:{SCENARIO}]]", "repo": "demo"}
                r = await api.post("/api/tasks", params={"auto_run": "true"}, json=body)
                r.raise_for_status()
                ids.append(r.json()["id"])
            poller = Poller(api, ids, args.poll_ms / 1000)
            meter = CpuMeter(up.proc.pid, _temporal_pid(tmp / "data"), str(tmp), _api_pid(up.proc.pid))
            meter.start()
            sampler = asyncio.create_task(_sample(meter))
            live = LiveReader(api, ids)
            pages = asyncio.create_task(live.run() if args.pages else asyncio.sleep(0))
            await asyncio.wait_for(poller.run(), args.timeout)
            sampler.cancel()
            try:  # every page's stream ends by itself once its task is finished
                await asyncio.wait_for(pages, 30)
            except TimeoutError:
                pass
            cpu = meter.stop()
            wall = time.monotonic() - started
        cfg = yaml.safe_load(Path(config).read_text())
        prefix = cfg["temporal"]["id_prefix"]
        faults = await history_faults(f"127.0.0.1:{up.temporal_port}", "default", [f"{prefix}task-{i}" for i in ids])
    finally:
        up.stop()
        assert fakes.stdin is not None
        fakes.stdin.close()
        fakes.wait(15)
    statuses = [t["status"] for t in poller.finished.values()]
    expected = args.turns * 5  # each turn's five Bash calls print one T= line each
    lost = sum(max(0, expected - len(seen)) for seen in poller.stamps.values())
    return {
        "agents": args.agents,
        "agents_cpu_weight": args.agents_cpu_weight or "off",
        "turns_per_agent": args.turns,
        "wall_s": round(wall, 1),
        "tasks_done": statuses.count("done"),
        "log_lines": poller.lines,
        "log_lines_per_s": round(poller.lines / wall, 1),
        "api_calls": len(poller.latencies),
        "api_errors": poller.errors,
        "api_ms": {p: round(pct(poller.latencies, p) * 1000, 1) for p in (50, 95, 99)},
        "log_lag_s": {p: round(pct(poller.lags, p), 3) for p in (50, 95, 99)} | {"max": round(max(poller.lags, default=0), 3)},
        "store_lag_s": {p: round(pct(poller.store_lags, p), 3) for p in (50, 99)},
        "read_lag_s": {p: round(pct(poller.read_lags, p), 3) for p in (50, 99)},
        "poll_interval_ms": args.poll_ms,
        "page_lag_s": {p: round(pct(live.lags, p), 3) for p in (50, 95, 99)} | {"lines": len(live.lags)},
        "lost_lines": lost,
        "expected_lines": expected * len(ids),
        "cpu": cpu,
        **faults,
    }


def render(res: dict[str, Any]) -> str:
    return "\n".join(
        [
            "# Load bench",
            "",
            f"`python -m bench.load_bench --agents {res['agents']} --turns {res['turns_per_agent']}` on the shared 2-core machine.",
            "",
            "| figure | measured | target |",
            "|---|---|---|",
            f"| tasks done | {res['tasks_done']} of {res['agents']} | all |",
            f"| log lines through the API | {res['log_lines']} ({res['log_lines_per_s']}/s over {res['wall_s']} s) | |",
            f"| API latency p50 / p95 / p99 | {res['api_ms'][50]} / {res['api_ms'][95]} / {res['api_ms'][99]} ms ({res['api_calls']} calls, {res['api_errors']} errors) | |",
            f"| log lag p50 / p99 / max (incl. a {res['poll_interval_ms']} ms poll) | {res['log_lag_s'][50]} / {res['log_lag_s'][99]} / {res['log_lag_s']['max']} s | < 1 s |",
            *([f"| log lag on a task's page (its live stream, no client poll) p50 / p95 / p99 | {res['page_lag_s'][50]} / {res['page_lag_s'][95]} / {res['page_lag_s'][99]} s ({res['page_lag_s']['lines']} lines) | < 1 s |"]
              if res["page_lag_s"]["lines"] else []),
            f"| of which: agent prints → Factory stores, p50 / p99 | {res['store_lag_s'][50]} / {res['store_lag_s'][99]} s | |",
            f"| of which: Factory stores → the API shows, p50 / p99 | {res['read_lag_s'][50]} / {res['read_lag_s'][99]} s | |",
            f"| heartbeat timeouts | {res['heartbeat_timeouts']} | 0 |",
            f"| lost lines (T= lines not seen through the API) | {res['lost_lines']} of {res['expected_lines']} | 0 |",
            f"| CPU s while the agents ran: Factory's worker / its API / Temporal / machine busy | "
            f"{res['cpu']['cpu_s'].get('factory')} / {res['cpu']['cpu_s'].get('factory api', '(in the worker)')} / "
            f"{res['cpu']['cpu_s'].get('temporal')} / "
            f"{res['cpu']['machine_busy_s']} (Factory + Temporal: {res['cpu']['factory_share_of_busy']:.0%}) | |",
            f"| agents' CLIs ran at nice (process/scheduling group) | {res['cpu']['agent_nice']} (Factory at 0) | |",
            f"| retried activity attempts | {res['retried_attempts']} | 0 |",
            "",
        ]
    )


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--poll-ms", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--agent-nice", type=int, default=None, help="sandbox.limits.nice for the run (default: the config's, 10)")
    ap.add_argument("--agents-cpu-weight", type=int, default=None,
                    help="sandbox.limits.agents_cpu_weight (default: the config's, off; bench/LOAD.md's cgroup runs used 10)")
    ap.add_argument("--pages", action="store_true",
                    help="also keep every task's page open: its live stream, GET /api/events?task_id= (log lag as seen there)")
    ap.add_argument("--serve-fakes", action="store_true")
    args = ap.parse_args()
    if args.serve_fakes:
        serve_fakes(args.turns)
        return
    res = asyncio.run(main(args))
    text = render(res)
    out = ROOT / "bench" / "results" / "load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(text)
    print(json.dumps(res))


if __name__ == "__main__":
    cli()
