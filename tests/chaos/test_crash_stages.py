"""SIGKILL of the worker alone, and of the whole `factory up` with its dev server, while tasks stand in
every stage: preparing, agent running, pushing, opening the PR, cleaning up, waiting for an answer.

After one restart every task ends as it should within 60 s: done with one PR (the cancelled one:
cancelled with none), its branch holding the agent's work, and no agent process or worktree left.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from factory.config import FactoryConfig, load_config
from factory.processes import process_start_time
from factory.specs import task_workflow_id
from temporal.client import data_converter
from tests.chaos.stages import (
    FetchHold,
    PushHold,
    create_task,
    poll,
    processes_of,
    record_figures,
    started_activities,
    task_of,
)
from tests.conftest import make_remote, remote_file, write_config
from tests.fakes.anthropic import Text, ToolUse
from tests.procs import FactoryUp, WorkerProcess, alive

pytestmark = pytest.mark.chaos

RECOVERY_S = 60  # every task ends within this long of the last restart
PULLS = r"/repos/acme/demo/pulls"


def _writes(name: str) -> list[ToolUse]:
    return [ToolUse("Write", {"file_path": name, "content": f"{name} by the agent\n"})]


def _session_holds(cfg: FactoryConfig, staged: Staged, text: str) -> bool:
    """Whether the CLI's saved session of this task (in its home, kept between runs) holds `text`."""
    home = cfg.workspace_path / "homes" / f"task-{staged.task['id']}" / ".claude" / "projects"
    return any(text in p.read_text(errors="replace") for p in home.glob("*/*.jsonl"))


@dataclass
class Staged:
    stage: str
    task: dict[str, Any]
    file: str  # what the agent wrote; the branch must hold it
    repo: Path
    scenario: str = ""
    github: str = "acme/demo"
    expect: str = "done"
    ended_after: float | None = None  # seconds from the restart to the task's end


@dataclass
class Bed:
    """Six tasks, each held in one stage, in one Factory."""

    model: Any
    github: Any
    remote: Path
    remote2: Path
    workspace: Path
    tmp: Path
    tasks: dict[str, Staged] = field(default_factory=dict)
    holds: list[Any] = field(default_factory=list)
    push_turns: int = 0  # the model requests of the task held in its push, when the crash came

    def config(self, **overrides: Any) -> Path:
        repos = {"demo2": {"url": f"file://{self.remote2}", "github": "acme/demo2"}}
        return write_config(self.tmp, self.remote, self.github.url, repos=repos, **overrides)

    def _scenario(self, stage: str, turns: list[Any]) -> str:
        name = f"{stage}-{uuid.uuid4().hex[:8]}"
        self.model.add_scenario(name, turns)
        return name

    async def _add(
        self, api: httpx.AsyncClient, stage: str, title: str, turns: list[Any], file: str, **kw: Any
    ) -> Staged:
        repo = kw.pop("repo", "demo")
        scenario = self._scenario(stage, turns)
        # the stand-in GitHub outlives the test, and task ids start at 1 in each database: a title of
        # its own keeps each test's branch names (and PRs) apart
        task = await create_task(api, f"{title} {scenario[-8:]}", scenario, repo=repo)
        remote = self.remote2 if repo == "demo2" else self.remote
        staged = Staged(stage, task, file, remote, scenario, github=f"acme/{repo}", **kw)
        self.tasks[stage] = staged
        return staged

    async def set_up(self, api: httpx.AsyncClient, client: Client, cfg: FactoryConfig) -> None:
        """Start the six tasks and wait until each stands in its stage."""
        pushes = PushHold(self.remote, self.tmp / "holds")
        pushes.hold("hold-push")
        pushes.hold("hold-cleanup")
        pr_hold = self.github.hold("POST", PULLS, body_matches=r'"head":\s*"factory/task-\d+-hold-pr')
        fetch = FetchHold(self.workspace, "demo2")
        self.holds = [pushes, pr_hold, fetch]

        async def started(stage: str) -> set[str]:
            return await started_activities(client, task_workflow_id(cfg, self.tasks[stage].task["id"]))

        await self._add(api, "pr", "hold-pr stage", [_writes("pr.txt"), Text("Wrote pr.txt.")], "pr.txt")
        await self._add(api, "push", "hold-push stage", [_writes("push.txt"), Text("Wrote push.txt.")], "push.txt")
        question = Text('{"type": "question", "question": "Which colour?"}')
        await self._add(api, "ask", "answer stage", [question, _writes("answer.txt"), Text("Used it.")], "answer.txt")
        prep = [_writes("prep.txt"), Text("Wrote prep.txt.")]
        await self._add(api, "prep", "prep stage", prep, "prep.txt", repo="demo2")
        await poll(pr_hold.entered.is_set, "the PR creation to reach GitHub")
        await poll(lambda: pushes.entered("hold-push"), "the push to reach the remote")
        await poll(lambda: self._is("ask", api, "awaiting_input"), "the question")
        await poll(lambda: self._has(started("prep"), "prepare_workspace"), "the fetch to wait on the mirror")

        # two long agents last: they hold agent slots until the crash
        running = [[ToolUse("Bash", {"command": "echo working; sleep 60"})], _writes("agent.txt"), Text("Done.")]
        agent = await self._add(api, "agent", "agent stage", running, "agent.txt")
        halted = [_writes("wip.txt"), [ToolUse("Bash", {"command": "sleep 60"})], Text("Never reached.")]
        clean = await self._add(api, "cleanup", "hold-cleanup stage", halted, "wip.txt", expect="cancelled")
        await poll(lambda: len(self.model.requests_for(clean.scenario)) >= 2, "the agent to write wip.txt")
        assert (await api.post(f"/api/tasks/{clean.task['id']}/cancel")).status_code == 202
        await poll(lambda: pushes.entered("hold-cleanup"), "the cleanup's push of the work in progress")
        await poll(lambda: self.model.requests_for(agent.scenario), "the agent to run")
        # its session saved with the command it runs: the retry resumes after it (a crash before the CLI wrote its
        # turn is retried afresh, as it should be, and would run the 60 s command again)
        await poll(lambda: _session_holds(cfg, agent, "sleep 60"), "the agent's session to hold its command")
        await poll(lambda: self._has(started("agent"), "run_agent"), "the agent activity")
        # still where they were put: the push inside the agent's run (it pushes when its reply ends the session;
        # activities/_agent_push.py), the PR's creation (a local activity) held at GitHub (pr_hold, above)
        assert "run_agent" in await started("push")
        assert "cleanup_workspace" in await started("cleanup")
        # the run that dies pushing is retried straight to the push: its agent is not run again (check)
        self.push_turns = len(self.model.requests_for(self.tasks["push"].scenario))

    async def _is(self, stage: str, api: httpx.AsyncClient, status: str) -> bool:
        return (await task_of(api, self.tasks[stage].task["id"]))["status"] == status

    async def _has(self, acts: Any, name: str) -> bool:
        return name in await acts

    def release_pr(self) -> None:
        """Let the held PR creation through while nobody waits for its reply (a reply lost in a crash)."""
        self.holds[1].release()

    def release_rest(self) -> None:
        self.holds[0].release_all()
        self.holds[2].release()

    async def answer(self, api: httpx.AsyncClient) -> None:
        ask = self.tasks["ask"].task["id"]
        r = await api.post(f"/api/tasks/{ask}/answer", json={"answer": "blue"}, timeout=RECOVERY_S)
        assert r.status_code == 200, r.text

    async def wait_all(self, api: httpx.AsyncClient, restarted: float) -> None:
        """Wait for every task to end (at most RECOVERY_S after the restart), noting when each did."""
        deadline = restarted + RECOVERY_S
        while any(s.ended_after is None for s in self.tasks.values()):
            for s in self.tasks.values():
                if s.ended_after is None and (await task_of(api, s.task["id"]))["status"] in (
                    "done", "failed", "cancelled"
                ):  # fmt: skip
                    s.ended_after = time.monotonic() - restarted
            late = [s.stage for s in self.tasks.values() if s.ended_after is None]
            assert not late or time.monotonic() < deadline, f"still running {RECOVERY_S} s after the restart: {late}"
            await asyncio.sleep(0.2)

    async def check(self, api: httpx.AsyncClient, client: Client, cfg: FactoryConfig) -> int:
        """Each task ended as it should; returns the number of duplicate PRs (asserted 0)."""
        assert len(self.model.requests_for(self.tasks["push"].scenario)) == self.push_turns, "the agent ran again"
        duplicates = 0
        for s in self.tasks.values():
            t = await task_of(api, s.task["id"])
            assert t["status"] == s.expect, (s.stage, t["status"], t.get("error"), t.get("note"))
            content = remote_file(s.repo, t["branch"], s.file)
            assert content == f"{s.file} by the agent\n", (s.stage, t["branch"], content)
            prs = [p for p in self.github.prs if p["_repo"] == s.github and p["head"]["ref"] == t["branch"]]
            duplicates += max(0, len(prs) - 1)
            assert len(prs) == (1 if s.expect == "done" else 0), (s.stage, prs)
            if prs:
                assert t["pr_url"] == prs[0]["html_url"]
        for s in self.tasks.values():  # the workflows close (cleanup done), leaving no worktree
            handle = client.get_workflow_handle(task_workflow_id(cfg, s.task["id"]))

            async def closed(handle: Any = handle) -> bool:
                return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING

            await poll(closed, f"the {s.stage} task's workflow to close", timeout=30)
            assert not (self.workspace / "worktrees" / f"task-{s.task['id']}").exists(), s.stage
        await poll(lambda: not processes_of(self.workspace), "agents and git commands to be gone", timeout=15)
        return duplicates

    def close(self) -> None:
        """Never leave a hook or a stand-in holding something for the next test."""
        if self.holds:
            self.release_pr()
            self.release_rest()
        with self.github.lock:
            self.github.faults.clear()


@pytest.fixture
def bed(model, github, remote, tmp_path) -> Any:
    b = Bed(model, github, remote, make_remote(tmp_path / "remote2.git"), tmp_path / "ws", tmp_path)
    yield b
    b.close()


def _figures(path: Path, test: str, bed: Bed, duplicates: int) -> None:
    record_figures(
        path, test=test, crashes=1, tasks=len(bed.tasks), stages=sorted(bed.tasks),
        lost=sum(1 for s in bed.tasks.values() if s.ended_after is None), duplicates=duplicates,
        worst_restart_to_end_s=round(max(s.ended_after or 0 for s in bed.tasks.values()), 1),
    )  # fmt: skip


async def test_sigkilled_worker_with_tasks_in_every_stage(start_factory, bed, temporal_env, figures_file):
    address = temporal_env.client.service_client.config.target_host
    repos = {"demo2": {"url": f"file://{bed.remote2}", "github": "acme/demo2"}}
    async with start_factory(worker=False, temporal={"address": address}, repos=repos) as h:
        config = h.cfg.config_file
        first = WorkerProcess(config, bed.tmp / "worker1.log").start()
        second = None
        try:
            await bed.set_up(h.api, h.client, h.cfg)
            first.kill()
            bed.release_pr()
            restarted = time.monotonic()
            second = WorkerProcess(config, bed.tmp / "worker2.log").start()
            bed.release_rest()
            await bed.answer(h.api)
            await bed.wait_all(h.api, restarted)
            duplicates = await bed.check(h.api, h.client, h.cfg)
            _figures(figures_file, "worker SIGKILL", bed, duplicates)
            assert duplicates == 0
        finally:
            first.stop()
            if second:
                second.stop()


async def test_sigkilled_factory_up_with_tasks_in_every_stage(bed, figures_file):
    config = bed.config()
    cfg = load_config(config)
    data = bed.tmp / "updata"
    up = FactoryUp(config, data).start()
    up2 = None
    try:
        async with httpx.AsyncClient(base_url=up.url, timeout=30) as api:
            client = await Client.connect(f"127.0.0.1:{up.temporal_port}", data_converter=data_converter)
            await bed.set_up(api, client, cfg)
        pid, started = (data / "temporal.pid").read_text().split()
        up.proc.send_signal(signal.SIGKILL)  # the main process only: its children must not outlive it
        up.proc.wait()
        bed.release_pr()
        await poll(lambda: process_start_time(int(pid)) != started, "the dev server to die with factory up", 15)
        await poll(  # its API process too (it holds the API's port)
            lambda: not subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout.split(),
            "every process of the killed factory up to end", 15,
        )  # fmt: skip

        up2 = FactoryUp(config, data)
        up2.api_port, up2.temporal_port, up2.ui_port, up2.url = up.api_port, up.temporal_port, up.ui_port, up.url
        restarted = time.monotonic()
        up2.start()
        bed.release_rest()
        async with httpx.AsyncClient(base_url=up2.url, timeout=30) as api:
            client = await Client.connect(f"127.0.0.1:{up2.temporal_port}", data_converter=data_converter)
            await bed.answer(api)
            await bed.wait_all(api, restarted)
            duplicates = await bed.check(api, client, cfg)
        _figures(figures_file, "factory up SIGKILL (dev server included)", bed, duplicates)
        assert duplicates == 0
    finally:
        if up.proc and up.proc.poll() is None:
            up.proc.kill()
        if up2 is not None and up2.proc is not None:
            assert up2.stop() == 0
    assert not alive(up2.proc.pid)
    leftovers = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "processes of the stopped factory are still running"
