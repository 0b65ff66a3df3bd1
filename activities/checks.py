"""Proof of work: Factory itself checks the commit an agent's run left, and keeps the evidence.

`run_checks` copies the commit Factory pushed (finalize's head, Factory's own record) into a copy of
its own under `workspace_root/checks/task-N` that no agent run ever binds, runs the repo's
`checks.test_command` there in a fresh bubblewrap sandbox (the agents' sandbox: same limits, seccomp
and uid; no network, no model gateway, no broker, nothing of Factory's), reads the JUnit XML it wrote
(factory/evidence/junit.py: capped, no DTD), and stores the record in the artifact store
(factory/evidence/store.py). `post_evidence_comment` puts the record on the PR, one comment edited in
place. What this trusts: the repo's config and finalize's commit sha; not a byte of the copy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio import activity

from activities._agent_process import kill_group, read_tail, spawn
from activities._heartbeat import heartbeats
from factory.config import FactoryConfig
from factory.config_sections import ChecksConfig
from factory.contracts.checks import ChecksInput, ChecksResult, EvidenceCommentInput
from factory.evidence.junit import TestCounts, collect
from factory.evidence.report import feedback, pr_comment, verdict_line
from factory.evidence.store import ArtifactStore, artifact_store
from factory.git.commands import git
from factory.git.repos import git_env
from factory.integrations.github.client import GitHubClient
from factory.processes import read_to_end
from factory.sandbox.bwrap import SandboxSpec, build_command
from factory.sandbox.launch import SandboxArgv, prepare_launch
from factory.sandbox.policy import sandbox_environment
from factory.store.kv import kv_get, kv_set
from factory.store.tables import CostEntry, Task

OUTPUT_TAIL = 4000


def ledger_totals(engine: Engine, task_id: int) -> dict[str, Any]:
    """The task's cost and tokens from the ledger, its turns from its row."""
    with Session(engine) as s:
        rows = s.exec(select(CostEntry).where(CostEntry.task_id == task_id)).all()
        task = s.get(Task, task_id)
    tokens = sum(r.input_tokens + r.output_tokens + r.cache_read_tokens + r.cache_write_tokens for r in rows)
    return {
        "cost_usd": round(sum(r.cost_usd for r in rows), 6),
        "tokens": tokens,
        "turns": task.num_turns if task else 0,
    }


def _first_error(record: dict[str, Any]) -> str:
    errors = [s.get("error") for s in record.get("scenarios") or [] if s.get("error")]
    errors += (record.get("tests") or {}).get("failures") or []
    return f" ({errors[0]})" if errors else ""


async def _tail_and_exit(proc: asyncio.subprocess.Process) -> tuple[bytes, int]:
    """The test command's stdout read to its end, only its tail kept (it is the agent's code: it can print
    without end), and its exit code."""
    tail = await read_to_end(proc.stdout, OUTPUT_TAIL * 4)
    return tail, await proc.wait()


class CheckActivities:
    def __init__(self, cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient | None = None) -> None:
        self.cfg = cfg
        self.engine = engine
        self.store: ArtifactStore = artifact_store(cfg.data_path)
        self.github = GitHubClient(cfg, http) if http is not None else None

    def _checks(self, repo_name: str) -> ChecksConfig | None:
        rc = self.cfg.repos.get(repo_name)
        return rc.checks if rc is not None else None

    async def _copy(self, inp: ChecksInput) -> Path:
        """Factory's copy of exactly `inp.commit`: a fresh repository fetched from the task's checkout."""
        copy = self.cfg.workspace_path / "checks" / f"task-{int(inp.task_id)}"
        await asyncio.to_thread(shutil.rmtree, copy, True)
        copy.mkdir(parents=True)
        gd = copy / ".git"
        await git("init", "-q", str(copy), git_dir=None)
        # from the remote Factory pushed to, not the agent's checkout: the branch is fetched and the one
        # commit Factory recorded at the push is checked out by its sha (auth as a header, git_env)
        ref = f"refs/heads/{inp.workspace.branch}"
        env = git_env(self.cfg, inp.repo.url)
        await git("fetch", "-q", "--no-tags", inp.repo.url, f"+{ref}:refs/checks/head", git_dir=gd, env=env)
        await git("checkout", "-q", "--detach", inp.commit, git_dir=gd, work_tree=copy, cwd=copy)
        got = (await git("rev-parse", "HEAD", git_dir=gd)).strip()
        if got != inp.commit:
            raise RuntimeError(f"the copy holds {got}, not {inp.commit}")
        await asyncio.to_thread(shutil.rmtree, gd)  # the test command gets files, not a repository
        return copy

    async def _run_tests(self, task_id: int, copy: Path, checks: ChecksConfig) -> dict[str, Any]:
        """The test command in a fresh sandbox on the copy; counts from JUnit, else its exit code."""
        home = self.cfg.workspace_path / "checks" / f"home-{int(task_id)}"  # a fresh, empty HOME
        await asyncio.to_thread(shutil.rmtree, home, True)
        home.mkdir(parents=True)
        env = sandbox_environment(self.cfg, str(home), proxied=False)
        inner = ["/bin/sh", "-c", str(checks.test_command)]
        spec = SandboxSpec(worktree=copy, home=home)
        launch = await asyncio.to_thread(
            prepare_launch, spec, self.cfg.sandbox, f"checks-{task_id}-{os.urandom(4).hex()}"
        )
        out_path = home.parent / f"out-{int(task_id)}.txt"
        out_path.unlink(missing_ok=True)
        started = time.monotonic()
        try:
            argv = build_command(spec, inner)
            argv.insert(1, "--unshare-net")  # the test command reaches nothing: no network namespace shared
            cmd = SandboxArgv(argv)
            cmd.launch = launch
            proc = await spawn(cmd, str(copy), env, out_path)
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                out, code = await asyncio.wait_for(_tail_and_exit(proc), checks.timeout_minutes * 60)
            except TimeoutError:
                await kill_group(proc)
                out, code = b"", -1
        finally:
            await asyncio.to_thread(launch.close)
        tail = (out.decode(errors="replace") + await asyncio.to_thread(read_tail, out_path, OUTPUT_TAIL))[-OUTPUT_TAIL:]
        counts = TestCounts()
        problems = collect(copy, checks.junit, counts) if checks.junit else []
        tests: dict[str, Any] = {
            "passed": counts.passed, "failed": counts.failed, "skipped": counts.skipped,
            "failures": counts.failures, "exit_code": code, "output_tail": tail,
            "junit_files": counts.files, "junit_problems": problems, "seconds": round(time.monotonic() - started, 2),
        }  # fmt: skip
        if counts.files == 0:  # no JUnit: the exit code is the one result
            tests["passed" if code == 0 else "failed"] = 1
            if code != 0:
                tests["failures"] = [f"test command: exit {code}"]
        tests["ok"] = code == 0 and counts.failed == 0
        tests["output_sha256"] = self.store.put(tail.encode(), "txt")
        return tests

    @activity.defn
    @heartbeats
    async def run_checks(self, inp: ChecksInput) -> ChecksResult:
        """Run the repo's checks on the task's commit; store and answer the evidence."""
        checks = self._checks(inp.repo.name)
        if checks is None:
            return ChecksResult(verdict="none", commit=inp.commit)
        began = time.monotonic()
        copy = await self._copy(inp)
        try:
            record: dict[str, Any] = {"task_id": inp.task_id, "commit": inp.commit, "round": inp.round}
            ok = True
            # the browser first: the preview starts from the copy as the commit holds it, before the
            # test command (the agent's code) has written anything there
            if checks.browser or checks.preview_service:
                from activities.browser_checks import run_scenarios  # Playwright only where scenarios are set

                record["scenarios"] = await run_scenarios(self.cfg, self.store, inp, copy, checks)
                ok = all(s["ok"] for s in record["scenarios"])
            if checks.test_command:
                record["tests"] = await self._run_tests(inp.task_id, copy, checks)
                ok = ok and record["tests"]["ok"]
        finally:
            await asyncio.to_thread(shutil.rmtree, copy, True)
        record["verdict"] = "passed" if ok else "failed"
        record.update(await asyncio.to_thread(ledger_totals, self.engine, inp.task_id))
        record["checked_at"], record["seconds"] = time.time(), round(time.monotonic() - began, 2)
        earlier = await asyncio.to_thread(self.store.record, inp.task_id)
        if earlier and earlier.get("round", 1) < inp.round:  # the rounds before, by their verdict lines
            record["rounds"] = [*earlier.get("rounds", []), verdict_line(earlier) + _first_error(earlier)]
        await asyncio.to_thread(self.store.save_record, inp.task_id, record)
        await asyncio.to_thread(self.store.prune, checks.retention_days)
        t = record.get("tests") or {}
        return ChecksResult(
            verdict=record["verdict"], commit=inp.commit, passed=t.get("passed", 0), failed=t.get("failed", 0),
            skipped=t.get("skipped", 0), failures=list(t.get("failures", []))[:20],
            feedback=feedback(record) if not ok else "", summary=verdict_line(record),
        )  # fmt: skip

    @activity.defn
    @heartbeats
    async def post_evidence_comment(self, inp: EvidenceCommentInput) -> None:
        """The one evidence comment on the PR: made once, edited in place on each later round."""
        record = await asyncio.to_thread(self.store.record, inp.task_id)
        if record is None or self.github is None or not inp.repo.github:
            return
        record.update(await asyncio.to_thread(ledger_totals, self.engine, inp.task_id))
        body = pr_comment(record, self._public_url().rstrip("/"))
        key = f"evidence-comment:{inp.repo.github}#{inp.pr_number}"
        known = await asyncio.to_thread(kv_get, self.engine, key)
        if known:
            await self.github.edit_comment(inp.repo.github, int(known), body)
            return
        comment_id = await self.github.add_comment(inp.repo.github, inp.pr_number, body)
        await asyncio.to_thread(kv_set, self.engine, key, str(comment_id))

    def _public_url(self) -> str:
        return str(getattr(getattr(self.cfg, "auth", None), "public_url", "") or "")
