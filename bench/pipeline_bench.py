"""Pipeline bench: Factory's overhead per task and its throughput against the same raw steps.

    python -m bench.pipeline_bench                      # 20 sequential + 50 at concurrency 2
    python -m bench.pipeline_bench --seq 5 --tasks 10   # a quicker run

Both sides run the real ``claude`` CLI against the scripted Anthropic server
(``tests/fakes/anthropic.py``) with an instant agent (one ``Write`` tool call, then a
final text), real git on a local bare remote, and the stand-in GitHub
(``tests/fakes/github.py``). The two stand-in servers run in a child process so their
request handling never competes with Factory's event loop for the GIL (the real
Anthropic API and GitHub are remote too).

* **Factory**: a Temporal dev server (``WorkflowEnvironment.start_local``) and the
  in-process worker + API exactly as the tests start them (``tests.conftest.run_factory``).
  A task is ``POST /api/tasks?auto_run=true``; the bench polls the task's row in
  SQLite every ``--poll-ms`` until it reads ``done``.
* **Raw steps**: the same work done by a plain asyncio script, no Factory, no Temporal:
  ``git fetch`` of a bare mirror, ``git worktree add -b`` a new branch, the CLI with
  Factory's flags, ``git add/commit``, ``git push``, the PR lookup + create REST calls,
  ``git worktree remove``.

The agent's own run is the CLI *process lifetime*, measured the same way on both sides:
``claude_command`` is a tiny bash wrapper that stamps ``$EPOCHREALTIME`` before and after
running the real CLI (no fork for the stamps). The AgentRun row's ``ended_at -
started_at`` is reported too. Overhead = wall time - CLI lifetime.

The Factory side also gets a profile from each workflow's Temporal history (API, workflow
tasks, activity queue latency, activity execution per type) and CPU seconds per task.

Prints Markdown tables and writes ``bench/results/pipeline.json``. Not part of the pytest suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCENARIO = "bench"
CLI_FLAGS_TOOLS = ["Read", "Edit", "Write", "Bash", "Glob", "Grep"]
TERMINAL = ("done", "failed", "cancelled")


# --------------------------------------------------------------------------------------------------
# small helpers


def pct(values: list[float], p: float) -> float:
    """Percentile with linear interpolation (p in 0..100)."""
    if not values:
        return float("nan")
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def parse_db_time(value: Any) -> float | None:
    """A SQLite datetime column (stored as naive UTC text) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(str(value))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        claude = subprocess.run(["claude", "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:  # noqa: BLE001
        claude = "?"
    git_v = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    import temporalio

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "claude": claude,
        "git": git_v,
        "temporalio": temporalio.__version__,
        "loadavg_at_start": os.getloadavg(),
    }


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (own threads only), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_cpu() -> tuple[float, float]:
    """Machine-wide (busy, total) CPU seconds from /proc/stat (all processes, ours or not)."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals[:8]) - idle) / ticks, sum(vals[:8]) / ticks


def find_pid(needle: str) -> int | None:
    """Our child process whose command line contains all of `needle`'s words (our Temporal dev server)."""
    words = needle.split()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if all(w in cmd for w in words) and ppid == os.getpid():
            return int(entry.name)
    return None


def temporal_requests(log_path: Path) -> dict[str, float]:
    """The dev server's request counters from its Prometheus endpoint (named in its log): the calls it served,
    `<service> <operation>`, and its writes, `persistence <operation>` (its history service's only)."""
    m = re.search(r"Temporal Metrics:\s+(http://\S+/metrics)", log_path.read_text(errors="replace"))
    if m is None:
        return {}
    counts: dict[str, float] = defaultdict(float)
    with urllib.request.urlopen(m.group(1), timeout=10) as r:  # noqa: S310 (the dev server on localhost)
        for line in r.read().decode().splitlines():
            got = re.match(r"(service|persistence)_requests\{(.*)\} (\S+)$", line)
            if got is None:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', got.group(2)))
            service, op = labels.get("service_name", ""), labels.get("operation", "")
            if got.group(1) == "service" and service in ("frontend", "history", "matching"):
                counts[f"{service} {op}"] += float(got.group(3))
            elif got.group(1) == "persistence" and service == "history":
                counts[f"persistence {op}"] += float(got.group(3))
    return counts


def requests_per_task(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    return {k: round((v - before.get(k, 0.0)) / n, 2) for k, v in sorted(after.items()) if v != before.get(k, 0.0)}


class CpuMeter:
    """CPU seconds spent by this process, its waited-for children (git, the CLI) and the Temporal server."""

    def __init__(self, temporal_pid: int | None, fakes_pid: int | None):
        self.temporal_pid = temporal_pid
        self.fakes_pid = fakes_pid

    def snap(self) -> dict[str, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "bench_process": me.ru_utime + me.ru_stime,
            "bench_polls": POLL_CPU[0],
            "children_git_cli": ch.ru_utime + ch.ru_stime,
            "temporal_server": proc_cpu_seconds(self.temporal_pid) if self.temporal_pid else 0.0,
            "fake_servers": proc_cpu_seconds(self.fakes_pid) if self.fakes_pid else 0.0,
            "machine_busy": machine_cpu()[0],
            "machine_total": machine_cpu()[1],
            "wall": time.time(),
        }

    @staticmethod
    def diff(a: dict[str, float], b: dict[str, float], tasks: int) -> dict[str, float]:
        out = {k: (b[k] - a[k]) for k in a}
        out["machine_busy_fraction"] = out["machine_busy"] / out["machine_total"] if out["machine_total"] else 0.0
        skip = ("wall", "machine_total", "machine_busy_fraction")
        out["per_task"] = {k: v / max(tasks, 1) for k, v in out.items() if k not in skip}  # type: ignore[assignment]
        return out


# --------------------------------------------------------------------------------------------------
# the stand-in servers, in a child process


def serve_fakes() -> None:
    """Child-process mode: start the scripted model and the stand-in GitHub; print their URLs; run until stdin closes."""
    from tests.fakes.anthropic import ScriptedModel, Text, ToolUse
    from tests.fakes.github import FakeGitHub

    model = ScriptedModel()
    model.add_scenario(
        SCENARIO,
        [
            [ToolUse("Write", {"file_path": "bench.txt", "content": "written by the bench agent\n"})],
            Text("Wrote bench.txt."),
        ],
    )
    model.start()
    gh = FakeGitHub()
    gh.start()
    print(json.dumps({"model_url": model.base_url, "github_url": gh.url}), flush=True)
    try:
        sys.stdin.read()
    finally:
        gh.stop()
        model.stop()


class Fakes:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.model_url = ""
        self.github_url = ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.pipeline_bench", "--serve-fakes"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the stand-in servers did not start")
        urls = json.loads(line)
        self.model_url, self.github_url = urls["model_url"], urls["github_url"]

    def stop(self) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------------------------------
# the timed CLI wrapper


WRAPPER = """#!/bin/bash
# bench: stamp the real CLI's lifetime ($EPOCHREALTIME is a bash builtin: no fork)
s=$EPOCHREALTIME
{real} "$@"
rc=$?
e=$EPOCHREALTIME
line="${{FACTORY_TASK_ID:-?}} $s $e $rc"
# the raw script's runs append to the log; Factory's run in the sandbox, where the log is out of
# reach, so the same line also goes to stderr, which Factory keeps in run/task-N.stderr
echo "$line" >> {log} 2>/dev/null
echo "BENCH-CLI $line" >&2
exit $rc
"""


def write_wrapper(tmp: Path) -> tuple[Path, Path]:
    real = shutil.which("claude")
    if not real:
        raise SystemExit("the `claude` CLI is not on PATH (npm install -g @anthropic-ai/claude-code)")
    log = tmp / "cli-times.log"
    path = tmp / "claude-timed"
    path.write_text(WRAPPER.format(real=real, log=log))
    path.chmod(0o755)
    return path, log


# The raw CLI at the priority Factory's sandbox gives its agents (nice 10, its session's scheduling group
# too), so both sides' agents compete alike with the rest of a shared machine. A shell in front, not a
# preexec_fn: that would make the spawn a full fork() of this process (~10 ms), which the raw side never paid.
AGENT_PRIORITY = ["sh", "-c", 'echo 10 > /proc/self/autogroup 2>/dev/null; exec nice -n 10 "$@"', "agent"]


RUN_DIR: Path | None = None  # Factory's run dir (`run/task-N.stderr` hold the sandboxed runs' lines)


def read_cli_times(log: Path) -> dict[str, tuple[float, float]]:
    """label -> (start, end) epoch seconds of the CLI process (the last run of each label)."""
    out: dict[str, tuple[float, float]] = {}
    lines = log.read_text().splitlines() if log.exists() else []
    for err in sorted(RUN_DIR.glob("task-*.stderr")) if RUN_DIR else []:
        lines += [ln.removeprefix("BENCH-CLI ") for ln in err.read_text(errors="replace").splitlines() if ln.startswith("BENCH-CLI ")]
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:
            out[parts[0]] = (float(parts[1]), float(parts[2]))
    return out


# --------------------------------------------------------------------------------------------------
# the raw steps, without Factory or Temporal


class RawPipeline:
    """fetch → worktree add → claude → commit → push → PR lookup + create → worktree remove."""

    def __init__(self, tmp: Path, remote: Path, wrapper: Path, github_url: str, system_prompt: str):
        self.root = tmp / "raw"
        self.mirror = self.root / "mirror.git"
        self.remote = remote
        self.wrapper = wrapper
        self.github_url = github_url.rstrip("/")
        self.system_prompt = system_prompt
        self.fetch_lock = asyncio.Lock()  # Factory serialises fetches per mirror too (a file lock)
        # git removes the mirror's empty `worktrees/` with the last worktree, under a concurrent `worktree add`
        # ("could not create directory of 'worktrees/task-N'"): the raw side's adds and removes take turns
        self.worktree_lock = asyncio.Lock()
        self.env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        self.http: Any = None
        self.seq = 0

    async def setup(self) -> None:
        import httpx

        self.root.mkdir(parents=True, exist_ok=True)
        await self.git("clone", "--bare", "--end-of-options", f"file://{self.remote}", str(self.mirror))
        await self.git("config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*", cwd=self.mirror)
        await self.git("fetch", "--prune", "origin", cwd=self.mirror)
        self.http = httpx.AsyncClient(timeout=30)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()

    async def git(self, *args: str, cwd: Path | str | None = None) -> str:
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=cwd, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"git {args[0]} failed: {err.decode(errors='replace')}")
        return out.decode(errors="replace")

    async def run_one(self) -> dict[str, Any]:
        self.seq += 1
        n = self.seq
        label = f"raw-{n}"
        branch = f"raw/task-{n}-bench-task-{n}"
        path = self.root / "worktrees" / f"task-{n}"
        marks: dict[str, float] = {}
        t0 = time.time()
        async with self.fetch_lock:
            await self.git("fetch", "--prune", "origin", cwd=self.mirror)
        marks["fetch"] = time.time()
        path.parent.mkdir(parents=True, exist_ok=True)
        async with self.worktree_lock:
            await self.git(
                "worktree", "add", "-b", branch, "--end-of-options", str(path), "refs/remotes/origin/main",
                cwd=self.mirror,
            )  # fmt: skip
        marks["worktree_add"] = time.time()
        tools = ",".join(CLI_FLAGS_TOOLS)
        cmd = [
            str(self.wrapper), "-p", "--output-format", "stream-json", "--verbose",
            "--append-system-prompt", self.system_prompt, "--tools", tools, "--allowedTools", tools,
            "--session-id", str(uuid.uuid4()),
        ]  # fmt: skip
        prompt = (
            f"# Task #{n}: Bench task {n}\n\n[[scenario:{SCENARIO}]] Write bench.txt.\n\n"
            f"You are working in a git worktree of demo on branch `{branch}`. "
            "Make the change, run what checks you can, and end with a short summary of what you did."
        )
        proc = await asyncio.create_subprocess_exec(
            *AGENT_PRIORITY, *cmd, cwd=path, env={**self.env, "FACTORY_TASK_ID": label},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True, limit=32 * 1024 * 1024,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(prompt.encode())
        await proc.stdin.drain()
        proc.stdin.close()
        result: dict[str, Any] = {}
        while line := await proc.stdout.readline():
            if line.startswith(b'{"type":"result"'):
                result = json.loads(line)
        await proc.wait()
        marks["cli"] = time.time()
        if result.get("subtype") != "success":
            raise RuntimeError(f"raw task {n}: the CLI gave no success result: {result}")
        if (await self.git("status", "--porcelain", cwd=path)).strip():
            await self.git("add", "-A", cwd=path)
            await self.git(
                "-c", "user.name=Factory", "-c", "user.email=factory@localhost",
                "commit", "--no-verify", "-q", "-m", f"Bench task {n}", cwd=path,
            )  # fmt: skip
        marks["commit"] = time.time()
        await self.git("push", "--no-verify", "origin", f"HEAD:refs/heads/{branch}", cwd=path)
        marks["push"] = time.time()
        base = f"{self.github_url}/repos/acme/demo/pulls"
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        r = await self.http.get(base, params={"head": f"acme:{branch}", "state": "open"}, headers=headers)
        r.raise_for_status()
        if not any((p.get("head") or {}).get("ref") == branch for p in r.json()):
            r = await self.http.post(
                base,
                json={"title": f"Bench task {n}", "head": branch, "base": "main", "body": "bench"},
                headers=headers,
            )
            r.raise_for_status()
        marks["pr"] = time.time()
        async with self.worktree_lock:
            await self.git("worktree", "remove", "--force", str(path), cwd=self.mirror)
        marks["worktree_remove"] = time.time()
        return {"label": label, "t0": t0, "t_end": marks["worktree_remove"], "t_pr": marks["pr"], "marks": marks}


def raw_step_durations(rec: dict[str, Any], cli: tuple[float, float] | None) -> dict[str, float]:
    m = rec["marks"]
    order = ["fetch", "worktree_add", "cli", "commit", "push", "pr", "worktree_remove"]
    prev = rec["t0"]
    out: dict[str, float] = {}
    for k in order:
        out[k] = m[k] - prev
        prev = m[k]
    if cli:
        out["cli_spawn_and_read_tail"] = out["cli"] - (cli[1] - cli[0])
    return out


def raw_enrich(recs: list[dict[str, Any]], cli_log: Path) -> list[dict[str, Any]]:
    times = read_cli_times(cli_log)
    for r in recs:
        cli = times.get(r["label"])
        r["cli_s"] = (cli[1] - cli[0]) if cli else None
        r["wall_s"] = r["t_end"] - r["t0"]
        r["wall_to_pr_s"] = r["t_pr"] - r["t0"]
        r["overhead_s"] = r["wall_s"] - r["cli_s"] if cli else None
        r["overhead_to_pr_s"] = r["wall_to_pr_s"] - r["cli_s"] if cli else None
        r["steps"] = raw_step_durations(r, cli)
    return recs


async def raw_throughput(raw: RawPipeline, n: int, concurrency: int, cli_log: Path) -> dict[str, Any]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    recs: list[dict[str, Any]] = []

    async def worker() -> None:
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            recs.append(await raw.run_one())

    t0 = time.time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    t1 = time.time()
    times = read_cli_times(cli_log)
    clis = [times[r["label"]] for r in recs if r["label"] in times]
    return {
        "tasks": n,
        "concurrency": concurrency,
        "wall_s": t1 - t0,
        "tasks_per_min": n / (t1 - t0) * 60,
        "cli_busy_fraction": sum(e - s for s, e in clis) / (concurrency * (t1 - t0)),
        "cli_mean_s": statistics.fmean(e - s for s, e in clis) if clis else None,
        "slot_gap": slot_gaps(clis, concurrency),
        "cli_timeline": [(round(a - t0, 3), round(b - t0, 3)) for a, b in sorted(clis)],
    }


def slot_gaps(intervals: list[tuple[float, float]], slots: int) -> dict[str, float]:
    """Assign CLI runs to `slots` lanes (greedy by start) and measure the idle gap between runs in a lane."""
    lanes: list[float] = []
    gaps: list[float] = []
    for s, e in sorted(intervals):
        free = [i for i, end in enumerate(lanes) if end <= s]
        if free:
            i = max(free, key=lambda j: lanes[j])  # the lane that freed most recently
            gaps.append(s - lanes[i])
            lanes[i] = e
        else:
            lanes.append(e)
    peak = 0
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    cur = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return {**summary(gaps), "peak_concurrent_cli": peak}


# --------------------------------------------------------------------------------------------------
# Factory


class LoopProbe:
    """Samples the event loop's lag (how late a 10 ms sleep wakes up) and the default executor's backlog.

    The worker, the API and the bench share this loop, as they do in `factory up`; the default
    executor serves `asyncio.to_thread` (the mirror's flock wait, the API's repo check).
    """

    def __init__(self, every_s: float = 0.01):
        self.every_s = every_s
        self.lags: list[float] = []
        self.backlog: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.every_s)
            self.lags.append(loop.time() - t - self.every_s)
            ex = getattr(loop, "_default_executor", None)
            self.backlog.append(ex._work_queue.qsize() if ex is not None else 0)

    def __enter__(self) -> LoopProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def result(self) -> dict[str, Any]:
        return {
            "loop_lag_s": summary(self.lags),
            "loop_lag_over_50ms_fraction": sum(1 for x in self.lags if x > 0.05) / max(len(self.lags), 1),
            "default_executor_backlog_max": max(self.backlog, default=0),
            "default_executor_backlog_mean": statistics.fmean(self.backlog) if self.backlog else 0.0,
        }


POLL_CPU = [0.0]  # this thread's CPU seconds in DbPoller.status/finished: the bench's own, not Factory's


class DbPoller:
    """Reads task rows straight from Factory's SQLite file (not through the in-process API)."""

    def __init__(self, db_path: Path):
        self.conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout=5000")

    def status(self, task_id: int) -> str | None:
        t0 = time.thread_time()
        row = self.conn.execute("SELECT status FROM task WHERE id=?", (task_id,)).fetchone()
        POLL_CPU[0] += time.thread_time() - t0
        return row[0] if row else None

    def finished(self, ids: list[int]) -> dict[int, str]:
        if not ids:
            return {}
        q = f"SELECT id, status FROM task WHERE id IN ({','.join('?' * len(ids))}) AND status IN ('done','failed','cancelled')"
        t0 = time.thread_time()
        out = {r[0]: r[1] for r in self.conn.execute(q, ids)}
        POLL_CPU[0] += time.thread_time() - t0
        return out

    def task_row(self, task_id: int) -> dict[str, Any]:
        cur = self.conn.execute("SELECT * FROM task WHERE id=?", (task_id,))
        cols = [c[0] for c in cur.description]
        row = cur.fetchone()
        return dict(zip(cols, row, strict=True)) if row else {}

    def agent_runs(self, task_id: int) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM agentrun WHERE task_id=? ORDER BY id", (task_id,))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def log_count(self, task_id: int) -> int:
        return self.conn.execute("SELECT count(*) FROM tasklog WHERE task_id=?", (task_id,)).fetchone()[0]


def _body(i: int) -> dict[str, Any]:
    return {"title": f"Bench task {i}", "description": f"[[scenario:{SCENARIO}]] Write bench.txt.", "repo": "demo"}


async def post_task(h: Any, i: int) -> tuple[int, float, float]:
    t0 = time.time()
    r = await h.api.post("/api/tasks", params={"auto_run": "true"}, json=_body(i))
    t1 = time.time()
    if r.status_code != 201:
        raise RuntimeError(f"POST /api/tasks: {r.status_code} {r.text}")
    return r.json()["id"], t0, t1


async def wait_status(
    h: Any, poller: DbPoller, task_id: int, poll_s: float, via_api: bool, timeout: float = 300
) -> tuple[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        if via_api:
            st = (await h.api.get(f"/api/tasks/{task_id}")).json()["status"]
        else:
            st = poller.status(task_id)
        if st in TERMINAL:
            return st, time.time()
        if time.monotonic() > deadline:
            raise RuntimeError(f"task {task_id} still {st} after {timeout}s")
        await asyncio.sleep(poll_s)


async def history_profile(client: Any, wid: str) -> dict[str, Any]:
    """Temporal history of one task's workflow as timed segments (epoch seconds)."""
    from temporalio.api.enums.v1 import EventType as E

    hist = await client.get_workflow_handle(wid).fetch_history()
    ts = lambda e: e.event_time.ToMicroseconds() / 1e6  # noqa: E731
    acts: dict[int, dict[str, Any]] = {}
    wfts: dict[int, dict[str, Any]] = {}
    started = closed = None
    for e in hist.events:
        t = e.event_type
        if t == E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            started = ts(e)
        elif t in (E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED):
            closed = ts(e)
        elif t == E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            wfts[e.event_id] = {"scheduled": ts(e)}
        elif t == E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            wfts[e.workflow_task_started_event_attributes.scheduled_event_id]["started"] = ts(e)
        elif t == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            wfts[e.workflow_task_completed_event_attributes.scheduled_event_id]["completed"] = ts(e)
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            acts[e.event_id] = {"name": a.activity_type.name, "queue": a.task_queue.name, "scheduled": ts(e)}
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            acts[e.activity_task_started_event_attributes.scheduled_event_id]["started"] = ts(e)
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            acts[e.activity_task_completed_event_attributes.scheduled_event_id]["completed"] = ts(e)
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            acts[e.activity_task_failed_event_attributes.scheduled_event_id]["completed"] = ts(e)
            acts[e.activity_task_failed_event_attributes.scheduled_event_id]["failed"] = True
    return {
        "started": started,
        "closed": closed,
        "events": len(hist.events),
        "workflow_tasks": [w for w in wfts.values() if "completed" in w],
        "activities": list(acts.values()),
    }


def critical_path(
    prof: dict[str, Any], t_post: float, t_post_done: float, t_done: float, cli: tuple[float, float] | None
) -> dict[str, float]:
    """Split POST → done into where the time went (segments clipped to that window)."""

    def clip(a: float, b: float) -> float:
        return max(0.0, min(b, t_done) - max(a, t_post))

    out: dict[str, float] = defaultdict(float)
    out["api_post_request"] = t_post_done - t_post
    out["post_to_workflow_started"] = (prof["started"] - t_post) if prof["started"] else float("nan")
    first = True
    for w in prof["workflow_tasks"]:
        key = "workflow_task_first" if first else "workflow_tasks_other"
        first = False
        out[key + "_queue"] += clip(w["scheduled"], w.get("started", w["scheduled"]))
        out[key + "_run"] += clip(w.get("started", w["scheduled"]), w["completed"])
    for a in prof["activities"]:
        if "completed" not in a:
            continue
        st = a.get("started", a["scheduled"])
        out["activity_queue_latency"] += clip(a["scheduled"], st)
        run = clip(st, a["completed"])
        if a["name"] == "run_agent" and cli is not None and run > 0:
            out["run_agent_minus_cli"] += run - clip(cli[0], cli[1])
            out["cli"] += clip(cli[0], cli[1])
        else:
            out[f"act:{a['name']}"] += run
    covered = sum(v for k, v in out.items() if k not in ("api_post_request", "post_to_workflow_started"))
    out["gaps_and_poll"] = (t_done - max(t_post, prof["started"] or t_post)) - covered
    return dict(out)


def workflow_count(prof: dict[str, Any]) -> dict[str, int]:
    return {"workflow_tasks": len(prof["workflow_tasks"]), "activities": len(prof["activities"])}


async def factory_one(h: Any, poller: DbPoller, i: int, poll_s: float, via_api: bool) -> dict[str, Any]:
    """POST one task, poll until it reads done, then wait for its workflow to close (cleanup) so tasks never overlap."""
    from factory.specs import task_workflow_id

    tid, t0, t_posted = await post_task(h, i)
    status, t_done = await wait_status(h, poller, tid, poll_s, via_api)
    await h.client.get_workflow_handle(task_workflow_id(h.cfg, tid)).result()
    return {"task_id": tid, "status": status, "t0": t0, "t_posted": t_posted, "t_done": t_done, "t_closed": time.time()}


async def factory_enrich(h: Any, poller: DbPoller, recs: list[dict[str, Any]], cli_log: Path) -> list[dict[str, Any]]:
    from factory.specs import task_workflow_id

    times = read_cli_times(cli_log)
    for r in recs:
        tid = r["task_id"]
        row = poller.task_row(tid)
        runs = poller.agent_runs(tid)
        cli = times.get(str(tid))
        prof = await history_profile(h.client, task_workflow_id(h.cfg, tid))
        r["pr_url"] = row.get("pr_url")
        r["finished_at"] = parse_db_time(row.get("finished_at"))
        r["log_rows"] = poller.log_count(tid)
        r["agent_runs"] = len(runs)
        r["cli_s"] = (cli[1] - cli[0]) if cli else None
        run = runs[-1] if runs else {}
        a0, a1 = parse_db_time(run.get("started_at")), parse_db_time(run.get("ended_at"))
        r["agentrun_s"] = (a1 - a0) if a0 and a1 else None
        r["wall_s"] = r["t_done"] - r["t0"]
        r["wall_to_finished_at_s"] = (r["finished_at"] - r["t0"]) if r["finished_at"] else None
        r["wall_to_closed_s"] = (prof["closed"] - r["t0"]) if prof["closed"] else None
        r["overhead_s"] = r["wall_s"] - r["cli_s"] if cli else None
        r["overhead_agentrun_s"] = r["wall_s"] - r["agentrun_s"] if r["agentrun_s"] else None
        r["overhead_to_finished_at_s"] = r["wall_to_finished_at_s"] - r["cli_s"] if cli and r["finished_at"] else None
        r["overhead_to_closed_s"] = r["wall_to_closed_s"] - r["cli_s"] if cli and r["wall_to_closed_s"] else None
        r["agent_pre_spawn_s"] = (cli[0] - a0) if cli and a0 else None
        r["agent_post_exit_s"] = (a1 - cli[1]) if cli and a1 else None
        r["poll_detect_s"] = (r["t_done"] - r["finished_at"]) if r["finished_at"] else None
        r["path"] = critical_path(prof, r["t0"], r["t_posted"], r["finished_at"] or r["t_done"], cli)
        r["counts"] = workflow_count(prof)
        r["profile"] = prof
    return recs


async def factory_throughput(
    h: Any, poller: DbPoller, n: int, concurrency: int, poll_s: float, cli_log: Path
) -> dict[str, Any]:
    from factory.specs import task_workflow_id

    ids: list[int] = []
    done_at: dict[int, float] = {}
    status: dict[int, str] = {}
    posting = True

    async def poll() -> None:
        while posting or len(done_at) < len(ids):
            now = time.time()
            for tid, st in poller.finished(ids).items():
                if tid not in done_at:
                    done_at[tid] = now
                    status[tid] = st
            await asyncio.sleep(poll_s)

    poll_task = asyncio.create_task(poll())
    post_times = []
    start_times: list[float] = []
    launcher = h.app.state.launcher
    orig_start = launcher._start

    async def timed_start(*a: Any, **kw: Any) -> Any:  # instrumentation only: how much of a POST is start_workflow
        t = time.perf_counter()
        try:
            return await orig_start(*a, **kw)
        finally:
            start_times.append(time.perf_counter() - t)

    launcher._start = timed_start
    with LoopProbe() as probe:
        t_first = time.time()
        for i in range(n):
            tid, t0, t1 = await post_task(h, 1000 + i)
            ids.append(tid)
            post_times.append(t1 - t0)
        posting = False
        del launcher._start  # the class's method again
        await asyncio.wait_for(poll_task, 900)
    t_last = max(done_at.values())
    await asyncio.gather(*(h.client.get_workflow_handle(task_workflow_id(h.cfg, t)).result() for t in ids))
    profs = [await history_profile(h.client, task_workflow_id(h.cfg, t)) for t in ids]
    t_last_closed = max(p["closed"] for p in profs if p["closed"])
    times = read_cli_times(cli_log)
    clis = [times[str(t)] for t in ids if str(t) in times]
    agent_q = [
        a["started"] - a["scheduled"]
        for p in profs
        for a in p["activities"]
        if a["name"] == "run_agent" and "started" in a
    ]
    # time from one CLI's end to the next CLI's start in the same slot, split by where it went
    return {
        "tasks": n,
        "concurrency": concurrency,
        "statuses": {s: list(status.values()).count(s) for s in set(status.values())},
        "prs": sum(1 for t in ids if poller.task_row(t).get("pr_url")),
        "wall_s": t_last - t_first,
        "wall_to_last_closed_s": t_last_closed - t_first,
        "tasks_per_min": n / (t_last - t_first) * 60,
        "tasks_per_min_to_closed": n / (t_last_closed - t_first) * 60,
        "post_s": summary(post_times),
        "post_s_first_10": summary(post_times[:10]),
        "post_start_workflow_s": summary(start_times),
        "post_s_last_10": summary(post_times[-10:]),
        "event_loop": probe.result(),
        "posting_all_s": sum(post_times),
        "cli_busy_fraction": sum(e - s for s, e in clis) / (concurrency * (t_last - t_first)),
        "cli_mean_s": statistics.fmean(e - s for s, e in clis) if clis else None,
        "slot_gap": slot_gaps(clis, concurrency),
        "agent_schedule_to_start_s": summary(agent_q),
        "peak_agent_runs": peak_agent_runs(poller, ids),
        "cli_timeline": [(round(a - t_first, 3), round(b - t_first, 3)) for a, b in sorted(clis)],
        "activity_time_by_type_s": activity_totals(profs),
    }


def activity_totals(profs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per activity type: count, total execution and total queue wait, summed over the run's tasks."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"count": 0, "exec_s": 0.0, "queue_s": 0.0})
    for p in profs:
        for a in p["activities"]:
            if "completed" not in a:
                continue
            st = a.get("started", a["scheduled"])
            o = out[a["name"]]
            o["count"] += 1
            o["exec_s"] += a["completed"] - st
            o["queue_s"] += st - a["scheduled"]
        for w in p["workflow_tasks"]:
            o = out["(workflow task)"]
            o["count"] += 1
            o["exec_s"] += w["completed"] - w.get("started", w["scheduled"])
            o["queue_s"] += w.get("started", w["scheduled"]) - w["scheduled"]
    return dict(out)


def peak_agent_runs(poller: DbPoller, ids: list[int]) -> int:
    ev = []
    for t in ids:
        for r in poller.agent_runs(t):
            a0, a1 = parse_db_time(r["started_at"]), parse_db_time(r["ended_at"])
            if a0 and a1:
                ev += [(a0, 1), (a1, -1)]
    cur = peak = 0
    for _, d in sorted(ev):
        cur += d
        peak = max(peak, cur)
    return peak


def sqlite_write_cost(engine: Any, n: int = 200) -> dict[str, float]:
    """What one add_log (a TaskLog row in its own session and commit) costs on this machine."""
    from factory.contracts import TaskUpdate
    from factory.store.writes import add_log, update_task

    t = time.perf_counter()
    for i in range(n):
        add_log(engine, 999_999, "assistant", f"bench line {i}", 1)
    per_log = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(n):
        update_task(engine, TaskUpdate(task_id=999_999))  # no such row: one SELECT, no write
    per_update_miss = (time.perf_counter() - t) / n
    with engine.begin() as c:
        from sqlalchemy import text

        c.execute(text("DELETE FROM tasklog WHERE task_id = 999999"))
    return {"add_log_s": per_log, "update_task_lookup_s": per_update_miss}


# --------------------------------------------------------------------------------------------------
# report


def seq_summary(recs: list[dict[str, Any]], key: str) -> dict[str, float]:
    return summary([r[key] for r in recs if r.get(key) is not None])


def path_summary(recs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    keys = sorted({k for r in recs for k in r["path"]})
    return {k: summary([r["path"].get(k, 0.0) for r in recs]) for k in keys}


def raw_step_summary(recs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    keys = list(recs[0]["steps"]) if recs else []
    return {k: summary([r["steps"][k] for r in recs if k in r["steps"]]) for k in keys}


def temporal_line(calls: dict[str, float]) -> str:
    if not calls:
        return "(not read)"
    front = {k.split(" ", 1)[1]: v for k, v in calls.items() if k.startswith("frontend ") and "Poll" not in k}
    written = ("persistence UpdateWorkflowExecution", "persistence CreateWorkflowExecution")
    writes = sum(v for k, v in calls.items() if k in written)
    return f"{sum(front.values()):g} ({', '.join(f'{k} {v:g}' for k, v in front.items())}) / {writes:g}"


def render(res: dict[str, Any]) -> str:
    s, t = res["sequential"], res["throughput"]
    fo, ro = s["factory"]["overhead"], s["raw"]["overhead"]
    fc = s["factory"]["cpu"]["per_task"]
    fpy = fc["bench_process"] - fc.get("bench_polls", 0.0)
    r0 = t["rounds"][0]
    extra: list[str] = []
    conc = r0["factory"]["concurrency"]
    lines = [
        f"## Pipeline bench ({s['n']} sequential tasks each side; {r0['factory']['tasks']} tasks at concurrency {conc}, "
        f"{len(t['rounds'])} rounds)",
        "",
        "| per task (sequential) | Factory (POST → done) | raw steps | Factory extra |",
        "| --- | --- | --- | --- |",
        f"| wall p50 | {ms(s['factory']['wall']['p50'])} | {ms(s['raw']['wall']['p50'])} | {ms(s['factory']['wall']['p50'] - s['raw']['wall']['p50'])} |",
        f"| CLI lifetime p50 | {ms(s['factory']['cli']['p50'])} | {ms(s['raw']['cli']['p50'])} | |",
        f"| **non-agent time p50** | **{ms(fo['p50'])}** | **{ms(ro['p50'])}** | **{ms(fo['p50'] - ro['p50'])}** |",
        f"| non-agent time p95 | {ms(fo['p95'])} | {ms(ro['p95'])} | {ms(fo['p95'] - ro['p95'])} |",
        f"| non-agent p50 with agent = AgentRun row | {ms(s['factory']['overhead_agentrun']['p50'])} | | |",
        f"| non-agent p50, Factory to done vs raw up to the PR call | {ms(fo['p50'])} | {ms(s['raw']['overhead_to_pr']['p50'])} | {ms(fo['p50'] - s['raw']['overhead_to_pr']['p50'])} |",
        f"| non-agent p50, Factory to workflow closed (cleanup incl.) | {ms(s['factory']['overhead_to_closed']['p50'])} | {ms(ro['p50'])} | {ms(s['factory']['overhead_to_closed']['p50'] - ro['p50'])} |",
        f"| CPU s per task: bench process (Python) | {s['factory']['cpu']['per_task']['bench_process']:.3f} | {s['raw']['cpu']['per_task']['bench_process']:.3f} | |",
        f"| CPU s per task: Factory's Python (bench process − its status polls) | {fpy:.3f} | | |",
        f"| CPU s per task: Temporal server | {s['factory']['cpu']['per_task']['temporal_server']:.3f} | {s['raw']['cpu']['per_task']['temporal_server']:.3f} | |",
        f"| CPU s per task: git + CLI processes (Factory: git, docker, bwrap, socat; its sandboxed CLI is not counted) | {s['factory']['cpu']['per_task']['children_git_cli']:.3f} | {s['raw']['cpu']['per_task']['children_git_cli']:.3f} | |",
        f"| **Factory's CPU per task: its Python + Temporal + its git** | **{fpy + fc['temporal_server'] + fc['children_git_cli']:.3f}** | | |",
        f"| Temporal calls per task (frontend; incl. the bench's wait for the result) / its state writes | {temporal_line(s['factory'].get('temporal_requests_per_task', {}))} | | |",
        f"| CPU s per task: other processes on the machine | {s['factory']['foreign_cpu_per_task_s']:.3f} | {s['raw']['foreign_cpu_per_task_s']:.3f} | |",
        "",
        "| throughput round | Factory tasks/min | raw tasks/min | ratio | Factory CLI mean | raw CLI mean | machine busy F / raw | other procs' CPU s F / raw |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, r in enumerate(t["rounds"], 1):
        f, w = r["factory"], r["raw"]
        lines.append(
            f"| {i} | {f['tasks_per_min']:.1f} | {w['tasks_per_min']:.1f} | {r['ratio']:.2f}x | {ms(f['cli_mean_s'])} | "
            f"{ms(w['cli_mean_s'])} | {f['cpu']['machine_busy_fraction']:.0%} / {w['cpu']['machine_busy_fraction']:.0%} | "
            f"{foreign_cpu(f['cpu']):.1f} / {foreign_cpu(w['cpu']):.1f} |"
        )
    for i, r in enumerate(t["rounds"], 1):
        f = r["factory"]
        if "event_loop" in f:
            el = f["event_loop"]
            extra.append(
                f"- round {i}: POST /api/tasks p50 {ms(f['post_s']['p50'])} (first 10: {ms(f['post_s_first_10']['p50'])}, "
                f"last 10: {ms(f['post_s_last_10']['p50'])}; of which starting the workflow p50 "
                f"{ms(f['post_start_workflow_s']['p50'])}); event-loop lag p50 {ms(el['loop_lag_s']['p50'])}, "
                f"p95 {ms(el['loop_lag_s']['p95'])}; default-executor backlog max {el['default_executor_backlog_max']}; "
                f"agent wait in queue p50 {ms(f['agent_schedule_to_start_s']['p50'])}"
            )
    lines += [
        f"| **median** | **{t['factory_tasks_per_min']:.1f}** | **{t['raw_tasks_per_min']:.1f}** | **{t['ratio']:.2f}x** | | | | |",
        "",
        "Factory during the throughput runs:",
        "",
        *extra,
        "",
        "| target | figure | met |",
        "| --- | --- | --- |",
    ]
    for name, tg in res["targets"].items():
        lines.append(f"| {name} | {tg['figure']} | {'yes' if tg['met'] else '**no**'} |")
    lines += [
        "",
        "Factory POST → done, where the time goes (per task, ms):",
        "",
        "| segment | p50 | p95 |",
        "| --- | --- | --- |",
    ]
    for k, v in s["factory"]["path"].items():
        lines.append(f"| {k} | {v['p50'] * 1000:.1f} | {v['p95'] * 1000:.1f} |")
    lines += ["", "Raw steps (per task, ms):", "", "| step | p50 | p95 |", "| --- | --- | --- |"]
    for k, v in s["raw"]["steps"].items():
        lines.append(f"| {k} | {v['p50'] * 1000:.1f} | {v['p95'] * 1000:.1f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# main


class CpuAccumulator:
    """Sums CpuMeter deltas over many short intervals (interleaved runs)."""

    def __init__(self, meter: CpuMeter):
        self.meter = meter
        self.total: dict[str, float] = defaultdict(float)
        self._start: dict[str, float] | None = None

    def start(self) -> None:
        self._start = self.meter.snap()

    def stop(self) -> None:
        assert self._start is not None
        end = self.meter.snap()
        for k in end:
            self.total[k] += end[k] - self._start[k]
        self._start = None

    def result(self, tasks: int) -> dict[str, Any]:
        zero = {k: 0.0 for k in self.total}
        return CpuMeter.diff(zero, dict(self.total), tasks)


def foreign_cpu(c: dict[str, Any]) -> float:
    """Machine CPU seconds not spent by the bench, its children, its Temporal server or its stand-in servers."""
    ours = c["bench_process"] + c["children_git_cli"] + c["temporal_server"] + c["fake_servers"]
    return max(0.0, c["machine_busy"] - ours)


def tree_state() -> dict[str, Any]:
    def run(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"head": run("rev-parse", "--short", "HEAD"), "dirty_files": run("status", "--porcelain").splitlines()}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from factory.config import load_config
    from temporal.client import connect
    from temporal.devserver import DevServer, temporal_binary
    from temporal.worker import ensure_search_attributes
    from tests.conftest import make_remote, run_factory, write_config
    from tests.fakes.anthropic import FAKE_API_KEY, cli_env
    from tests.fakes.http import free_port

    info = machine()
    tree = tree_state()  # at the start: the code this run imported
    tmp = Path(tempfile.mkdtemp(prefix="factory-pipeline-bench-"))
    tmp.chmod(0o711)  # as root the sandbox runs as sandbox.uid, which needs search permission here
    fakes = Fakes()
    fakes.start()
    dev = None
    raw: RawPipeline | None = None
    saved_env = dict(os.environ)
    rounds: list[dict[str, Any]] = []
    temporal_calls: dict[str, float] = {}
    try:
        os.environ.update(cli_env(fakes.model_url, str(tmp / "home")))
        os.environ["ANTHROPIC_API_KEY"] = FAKE_API_KEY
        wrapper, cli_log = write_wrapper(tmp)
        remote = make_remote(tmp / "remote.git")
        cfg = load_config(
            write_config(
                tmp, remote, fakes.github_url,
                max_concurrent_agents=args.concurrency, claude_command=str(wrapper),
                agent_timeout_minutes=5, agent_activity_timeout_minutes=2,
                sandbox={"enabled": not args.no_sandbox},
            )
        )  # fmt: skip
        global RUN_DIR
        RUN_DIR = cfg.workspace_path / "run"
        system_prompt = Path(cfg.agent_templates["coder"].system_prompt_file).read_text()
        raw = RawPipeline(tmp, remote, wrapper, fakes.github_url, system_prompt)
        await raw.setup()

        # the dev server exactly as `factory up` starts it: state in a SQLite file under the data dir
        log(f"starting the Temporal dev server ({temporal_binary()}) as factory up does ...")
        dev = DevServer(tmp / "temporal-data", port=free_port(), ui_port=free_port())
        dev.spawn()
        await asyncio.to_thread(dev.wait_ready)
        client = await connect(cfg, dev.address)
        await ensure_search_attributes(client)
        meter = CpuMeter(dev.proc.pid if dev.proc else None, fakes.proc.pid if fakes.proc else None)
        if meter.temporal_pid is None:
            log("warning: could not find our Temporal dev server's pid; its CPU is not counted")
        poll_s = args.poll_ms / 1000
        db_path = Path(cfg.db_url.removeprefix("sqlite:///"))

        # The worker and API run for the whole bench (idle while the raw steps run), as in the tests.
        async with run_factory(cfg, client, object(), None, remote, tmp) as h:  # type: ignore[arg-type]
            poller = DbPoller(db_path)
            await asyncio.sleep(1)  # workers polling

            log(f"warm-up: {args.warmup} raw + {args.warmup} Factory tasks ...")
            for i in range(args.warmup):
                await raw.run_one()
                r = await factory_one(h, poller, 9000 + i, poll_s, False)
                if r["status"] != "done":
                    raise RuntimeError(f"warm-up task ended {r['status']}: {poller.task_row(r['task_id'])}")
            sqlite_cost = sqlite_write_cost(h.runtime.engine)

            # 1. per-task overhead: raw and Factory tasks interleaved, one at a time
            log(f"sequential: {args.seq} raw and {args.seq} Factory tasks, interleaved ...")
            raw_cpu, fac_cpu = CpuAccumulator(meter), CpuAccumulator(meter)
            requests_before = temporal_requests(dev.data_dir / "temporal.log")
            raw_seq, fac_seq = [], []
            for i in range(args.seq):
                raw_cpu.start()
                raw_seq.append(await raw.run_one())
                raw_cpu.stop()
                fac_cpu.start()
                fac_seq.append(await factory_one(h, poller, i, poll_s, args.poll_api))
                fac_cpu.stop()
            # before the enrich step's history reads; the raw steps between make none
            requests_after = temporal_requests(dev.data_dir / "temporal.log")
            temporal_calls = requests_per_task(requests_before, requests_after, args.seq)
            raw_enrich(raw_seq, cli_log)
            await factory_enrich(h, poller, fac_seq, cli_log)
            bad = [r for r in fac_seq if r["status"] != "done" or not r["pr_url"]]
            if bad:
                raise RuntimeError(f"Factory tasks did not all end done with a PR: {bad[:2]}")

            # 2. throughput at the same concurrency, in rounds (raw, then Factory)
            for rnd in range(args.rounds):
                log(f"throughput round {rnd + 1}/{args.rounds}: {args.tasks} raw tasks, {args.concurrency} workers ...")
                c0 = meter.snap()
                raw_tp = await raw_throughput(raw, args.tasks, args.concurrency, cli_log)
                c1 = meter.snap()
                log(
                    f"throughput round {rnd + 1}/{args.rounds}: {args.tasks} Factory tasks, max_concurrent_agents {args.concurrency} ..."
                )
                fac_tp = await factory_throughput(
                    h, poller, args.tasks, args.concurrency, args.tp_poll_ms / 1000, cli_log
                )
                c2 = meter.snap()
                if fac_tp["statuses"].get("done") != args.tasks or fac_tp["prs"] != args.tasks:
                    raise RuntimeError(f"Factory throughput run: {fac_tp['statuses']}, {fac_tp['prs']} PRs")
                raw_tp["cpu"] = CpuMeter.diff(c0, c1, args.tasks)
                fac_tp["cpu"] = CpuMeter.diff(c1, c2, args.tasks)
                rounds.append(
                    {"raw": raw_tp, "factory": fac_tp, "ratio": fac_tp["tasks_per_min"] / raw_tp["tasks_per_min"]}
                )
                log(
                    f"  raw {raw_tp['tasks_per_min']:.1f}/min, Factory {fac_tp['tasks_per_min']:.1f}/min, ratio {rounds[-1]['ratio']:.2f}"
                )
        import httpx

        prs = httpx.get(f"{fakes.github_url}/repos/acme/demo/pulls", params={"state": "all"}).json()
        expected = 2 * args.warmup + 2 * args.seq + 2 * args.tasks * args.rounds
        if len(prs) != expected:
            raise RuntimeError(f"the stand-in GitHub holds {len(prs)} PRs, expected {expected}")
    finally:
        if raw is not None:
            await raw.close()
        if dev is not None:
            await asyncio.to_thread(dev.stop)
        fakes.stop()
        os.environ.clear()
        os.environ.update(saved_env)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    fo = seq_summary(fac_seq, "overhead_s")
    ro = seq_summary(raw_seq, "overhead_s")
    fcpu, rcpu = fac_cpu.result(args.seq), raw_cpu.result(args.seq)
    ratios = [r["ratio"] for r in rounds]
    ratio = statistics.median(ratios)
    fpt = fcpu["per_task"]
    own_cpu = fpt["bench_process"] - fpt["bench_polls"] + fpt["temporal_server"] + fpt["children_git_cli"]
    res: dict[str, Any] = {
        "command": " ".join(["python -m bench.pipeline_bench", *sys.argv[1:]]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "tree": tree,
        "settings": vars(args),
        "sequential": {
            "n": args.seq,
            "factory": {
                "wall": seq_summary(fac_seq, "wall_s"),
                "cli": seq_summary(fac_seq, "cli_s"),
                "agentrun": seq_summary(fac_seq, "agentrun_s"),
                "overhead": fo,
                "overhead_agentrun": seq_summary(fac_seq, "overhead_agentrun_s"),
                "overhead_to_finished_at": seq_summary(fac_seq, "overhead_to_finished_at_s"),
                "overhead_to_closed": seq_summary(fac_seq, "overhead_to_closed_s"),
                "agent_pre_spawn": seq_summary(fac_seq, "agent_pre_spawn_s"),
                "agent_post_exit": seq_summary(fac_seq, "agent_post_exit_s"),
                "poll_detect": seq_summary(fac_seq, "poll_detect_s"),
                "log_rows_per_task": statistics.fmean(r["log_rows"] for r in fac_seq),
                "workflow_tasks_per_task": statistics.fmean(r["counts"]["workflow_tasks"] for r in fac_seq),
                "activities_per_task": statistics.fmean(r["counts"]["activities"] for r in fac_seq),
                "path": path_summary(fac_seq),
                "cpu": fcpu,
                "foreign_cpu_per_task_s": foreign_cpu(fcpu) / args.seq,
                # the dev server's counters over the sequential Factory tasks (the bench's own wait for each
                # workflow's result is one PollWorkflowExecutionHistory of them)
                "temporal_requests_per_task": temporal_calls,
            },
            "raw": {
                "wall": seq_summary(raw_seq, "wall_s"),
                "cli": seq_summary(raw_seq, "cli_s"),
                "overhead": ro,
                "overhead_to_pr": seq_summary(raw_seq, "overhead_to_pr_s"),
                "steps": raw_step_summary(raw_seq),
                "cpu": rcpu,
                "foreign_cpu_per_task_s": foreign_cpu(rcpu) / args.seq,
            },
            "extra_overhead_p50_s": fo["p50"] - ro["p50"],
        },
        "throughput": {
            "rounds": rounds,
            "factory_tasks_per_min": statistics.median(r["factory"]["tasks_per_min"] for r in rounds),
            "factory_tasks_per_min_to_closed": statistics.median(
                r["factory"]["tasks_per_min_to_closed"] for r in rounds
            ),
            "raw_tasks_per_min": statistics.median(r["raw"]["tasks_per_min"] for r in rounds),
            "ratio": ratio,
            "ratios": ratios,
        },
        "sqlite": sqlite_cost,
        "targets": {
            "Factory's CPU per task (its Python + Temporal + its git) <= 0.2 s": {
                "figure": f"{own_cpu:.3f} s", "met": own_cpu <= 0.2,
            },
            "Factory extra over the raw steps p50 <= 150 ms": {
                "figure": ms(fo["p50"] - ro["p50"]),
                "met": fo["p50"] - ro["p50"] <= 0.150,
            },
            "throughput >= 0.8x the raw steps' at 2 slots": {
                "figure": f"{ratio:.2f}x (median of {len(ratios)} rounds)",
                "met": ratio >= 0.8,
            },
        },
        "tasks": {
            "factory_sequential": [{k: v for k, v in r.items() if k != "profile"} for r in fac_seq],
            "factory_sequential_history": [r["profile"] for r in fac_seq],
            "raw_sequential": raw_seq,
        },
    }
    return res


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=50, help="tasks in the throughput run (default 50)")
    p.add_argument("--concurrency", type=int, default=2, help="max_concurrent_agents / raw workers (default 2)")
    p.add_argument("--seq", type=int, default=20, help="sequential tasks for the per-task overhead (default 20)")
    p.add_argument("--rounds", type=int, default=2, help="throughput rounds (raw then Factory each; default 2)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up tasks on each side (default 2)")
    p.add_argument("--poll-ms", type=float, default=10, help="status poll interval, sequential run (default 10)")
    p.add_argument("--tp-poll-ms", type=float, default=20, help="status poll interval, throughput run (default 20)")
    p.add_argument("--poll-api", action="store_true", help="poll GET /api/tasks/{id} (in-process) instead of SQLite")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "pipeline.json"))
    p.add_argument("--no-sandbox", action="store_true", help="run agents without bubblewrap (to see what it costs)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (repos, DB, CLI time log)")
    p.add_argument("--serve-fakes", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_fakes:
        serve_fakes()
        return
    res = asyncio.run(main(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    print(render(res))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli()
