"""The agent activity: run one turn of the agent's CLI in a worktree with a watchdog, heartbeats and logs.

Which CLI (Claude Code, Codex, OpenCode) is the agent spec's `backend` (factory/backends/): the
backend gives the command line, its environment and the parser of its output; everything here —
the sandbox, the gateway and its budget, the watchdog, logs, questions, the board — is the same for all.

Two-layer watchdog (ARCHITECTURE.md, decision 4): a local idle timer restarted by
every output line and a total timer both kill the agent's whole process group; the
activity's heartbeat timeout is the backstop when the worker itself dies. A child
gets SIGKILL when the worker dies (PR_SET_PDEATHSIG), and the next attempt kills any
stale process group recorded in the task's pid file before it starts.

Each run is contained (`activities/_agent_process.py`, docs/sandbox.md): a bubblewrap sandbox
with its own PID namespace, only the worktree and the task's CLI home writable, an allow-listed
environment and, by default, no network but Factory's egress proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._agent_lines import protocol_line
from activities._agent_process import AgentSandbox, PidFile, kill_group, read_head, read_tail, spawn
from activities._agent_prompt import run_prompt
from activities._agent_push import Finalize, push, pushed_before, wants_push
from activities.budgets import BudgetKeeper
from factory.backends import SESSION_ID, AgentBackend, Parser, Turn, backend_for, read_only_agent
from factory.backends.claude import BackendUnavailable
from factory.backends.routes import openai_route
from factory.config import FactoryConfig
from factory.contracts import AgentRequest, AgentResult, QuestionAsked, TaskUpdate
from factory.domain.redact import scrub
from factory.domain.streamjson import protocol_lines
from factory.environments.broker import EnvironmentBroker
from factory.processes import kill_leaderless_groups
from factory.sandbox.gateway import GatewayRun
from factory.sandbox.proxy import EgressProxy
from factory.store.board import Board
from factory.store.logsink import LogSink
from factory.store.tables import AgentRun, TaskStatus, utcnow
from factory.store.writes import start_run, update_agent_run, update_task


@dataclass
class _Progress:
    session_id: str
    started: bool = False
    final: dict[str, Any] | None = None  # the CLI's result line, as it came


class AgentActivities:
    def __init__(
        self,
        cfg: FactoryConfig,
        engine: Engine,
        board: Board,
        host: str,
        memory: Any = None,
        proxy: EgressProxy | None = None,
        broker: EnvironmentBroker | None = None,
        finalize: Finalize | None = None,
    ):
        self.cfg = cfg
        self.finalize = finalize  # the host's commit-and-push, for a run that ends its session (_agent_push.py)
        self.broker = broker  # Docker environments for the agent, through Factory (docker_toolkit)
        self.sandbox = AgentSandbox(cfg, proxy)
        self.engine = engine
        self.board = board
        self.host = host
        self.memory = memory
        self.run_dir = cfg.workspace_path / "run"
        self.secrets = cfg.secret_values()
        self.budgets = BudgetKeeper(cfg, engine, board)
        self.logs = LogSink(engine)  # every run's log lines, written in batches

    # --- process bookkeeping -------------------------------------------------------
    def _pidfile(self, task_id: int) -> PidFile:
        return PidFile(self.run_dir / f"task-{task_id}.pid")

    def _marker(self, task_id: int) -> Path:
        return self.run_dir / f"task-{task_id}.session"

    def _started_marker(self, task_id: int) -> str | None:
        try:
            return read_head(self._marker(task_id), 256).strip() or None  # the id came from the CLI's stdout
        except FileNotFoundError:
            return None

    def kill_stale(self, task_id: int, session_id: str = "", cwd: str = "") -> bool:
        """Kill an agent process group left by an earlier attempt of this task (on this host), if still ours."""
        kill_leaderless_groups(self.run_dir)  # once per process: sandboxes a killed worker left, any task's
        return self._pidfile(task_id).kill_stale(session_id, cwd)

    # --- command -------------------------------------------------------------------
    def _backend(self, req: AgentRequest) -> AgentBackend:
        try:
            return backend_for(self.cfg, req.agent.backend)
        except ValueError as exc:
            raise ApplicationError(str(exc), type="AgentUnavailable", non_retryable=True) from None

    def _turn(self, req: AgentRequest, resume: bool, budget_usd: float | None, gateway: GatewayRun | None) -> Turn:
        return Turn(
            req=req, resume=resume, budget_usd=budget_usd, system_prompt=self._system_prompt(req.agent.system_prompt_file),
            home=self.sandbox.home(req.task_id), model_url=gateway.base_url if gateway else "", stand_in=gateway.stand_in if gateway else "",
            claude_settings=self.sandbox.settings_args(),  # Claude's settings from Factory alone
        )  # fmt: skip

    def _command(
        self, req: AgentRequest, resume: bool, budget_usd: float | None = None, gateway: GatewayRun | None = None
    ) -> list[str]:
        try:
            return self._backend(req).command(self._turn(req, resume, budget_usd, gateway))
        except BackendUnavailable as exc:
            raise ApplicationError(str(exc), type="AgentUnavailable", non_retryable=True) from None

    def _system_prompt(self, path: str) -> str:
        p = self.cfg.prompt_path(path)
        try:
            return p.read_text()
        except OSError as exc:
            raise ApplicationError(f"cannot read system prompt {path}: {exc}", non_retryable=True) from exc

    def _env(self, req: AgentRequest, gateway: GatewayRun) -> dict[str, str]:
        env = self.sandbox.environment(req.task_id, gateway)  # the gateway's URL and a stand-in key, never the key
        env.update(
            {
                "FACTORY_TASK_ID": str(req.task_id),
                "FACTORY_REPO": req.repo_name,
                "FACTORY_WORKTREE": req.cwd,
                "GIT_AUTHOR_NAME": self.cfg.git_author_name,
                "GIT_AUTHOR_EMAIL": self.cfg.git_author_email,
                "GIT_COMMITTER_NAME": self.cfg.git_author_name,
                "GIT_COMMITTER_EMAIL": self.cfg.git_author_email,
                "GIT_TERMINAL_PROMPT": "0",
            }
        )
        if req.workflow_run_id is not None:
            env["FACTORY_WORKFLOW_ID"] = str(req.workflow_run_id)
        return env

    # --- the activity --------------------------------------------------------------
    @activity.defn
    async def run_agent(self, req: AgentRequest) -> AgentResult:
        """Run one agent turn (a fresh session or a resumed one) to its end, under the watchdog."""
        info = activity.info()
        self.sandbox.check()
        backend = self._backend(req)
        route = openai_route(self.cfg, backend)  # None for Claude (the gateway's Anthropic route)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # gone before its session is looked at
        await asyncio.to_thread(self.kill_stale, req.task_id, req.session_id, req.cwd)
        home = self.sandbox.ensure_home(req.task_id)
        resume = req.resume
        prompt = req.prompt
        details = info.heartbeat_details
        prev = details[0] if info.attempt > 1 and details and isinstance(details[0], dict) else {}
        if self.finalize is not None and (ended := pushed_before(req, self.run_dir, info.attempt)) is not None:
            return await push(req, ended, self.finalize, self.run_dir, self._beat_interval())  # died pushing: no rerun
        # written when the CLI announces its session: a crash before the first heartbeat still resumes it
        marker = await asyncio.to_thread(self._started_marker, req.task_id) if info.attempt > 1 else None
        interrupted = info.attempt > 1 and (bool(prev.get("started")) or marker == req.session_id)
        announced = prev.get("session_id") if isinstance(prev.get("session_id"), str) else marker
        if interrupted and announced and announced != req.session_id:
            # a backend that names its own sessions (Codex's thread id): resume the one it announced
            req = dataclasses.replace(req, session_id=announced)
        saved = backend.session_saved
        if resume and req.resume_from_task and backend.name == "claude":  # other backends: a follow-up starts afresh
            if why := await self.sandbox.seed_session(req.task_id, req.resume_from_task, req.session_id, req.cwd):
                self.logs.add(req.task_id, "event", why, info.attempt)
        if interrupted and not req.resume and not await asyncio.to_thread(saved, home, req.session_id):
            # it died before saving (read off the loop): afresh, new id; a killed CLI's thread may write the old
            interrupted, req = False, dataclasses.replace(req, session_id=str(uuid.uuid4()))
        if resume and not interrupted and not await asyncio.to_thread(saved, home, req.session_id):
            resume = False  # a retried task whose session was never saved (here): start it afresh, same id
        got: list[int] = []  # the board messages this run reads, marked delivered when it finishes
        prompt = await run_prompt(req, prompt, resume, interrupted, got, self.board, self.memory, self.logs, self.secrets)
        resume = resume or interrupted
        gate = await asyncio.to_thread(self.budgets.gate, req)
        if gate.refused is not None:  # nothing left: the run does not start, and the task asks
            self.logs.add(req.task_id, "event", gate.refused.result_text, info.attempt)
            await self.logs.flush()
            return gate.refused
        budget = gate.cap.left if gate.cap is not None else None
        self._command(req, resume, budget)  # a CLI that is not installed fails here, before the run is recorded
        if route is not None and not route.api_key:
            raise ApplicationError(
                f"OPENAI_API_KEY is not set: the {backend.name} backend needs it in the worker's environment",
                type="AgentUnavailable", non_retryable=True,
            )  # fmt: skip
        # database writes run in threads: a SQLite lock wait must not stall the loop that heartbeats
        started = TaskUpdate(task_id=req.task_id, status=TaskStatus.in_progress, host=self.host)
        run = AgentRun(task_id=req.task_id, agent_type=req.agent.agent_type, host=self.host)
        run_id = await asyncio.to_thread(start_run, self.engine, started, run)  # one transaction
        stderr_path = self.run_dir / f"task-{req.task_id}.stderr"
        progress = _Progress(session_id=req.session_id, started=resume)
        # the run's sandbox (and its proxy channel) lives until the process is gone
        contained = contextlib.AsyncExitStack()
        # the model gateway meters this run and stops it at `budget`, whatever the CLI reports
        gateway = await contained.enter_async_context(self.sandbox.model_gateway(budget, route))
        try:
            turn = self._turn(req, resume, budget, gateway)
            cmd = backend.command(turn)
        except BaseException as exc:
            await contained.aclose()
            if isinstance(exc, BackendUnavailable):
                raise ApplicationError(str(exc), type="AgentUnavailable", non_retryable=True) from None
            raise
        env = self._env(req, gateway)
        env.update(backend.environment(turn))
        if self.broker is not None:  # the token is valid while this agent runs, for its task's environments
            env["FACTORY_BROKER_SOCKET"] = self.sandbox.service_socket(self.broker.socket_path)
            env["FACTORY_BROKER_TOKEN"] = self.broker.grant(req.task_id, req.cwd, req.repo_name)
            contained.push_async_callback(self.broker.end_run, req.task_id)  # token gone, test envs down
        try:
            sockets = [self.broker.socket_path] if self.broker is not None else []
            # a backend with no per-tool list gets a read-only checkout for an agent type that must not write
            read_only = backend.needs_read_only_checkout and read_only_agent(req.agent.tools)
            sandboxed = self.sandbox.command(
                req.task_id, req.cwd, cmd, sockets, gateway, repo_name=req.repo_name, read_only_checkout=read_only
            )
            cmd = await contained.enter_async_context(sandboxed)
            proc = await spawn(cmd, req.cwd, env, stderr_path)
        except BaseException:
            await contained.aclose()
            raise
        self._pidfile(req.task_id).write(proc.pid, info.activity_id, info.attempt)
        await asyncio.to_thread(update_agent_run, self.engine, run_id, pid=proc.pid)
        heartbeat = asyncio.create_task(self._heartbeat_loop(progress))
        try:
            assert proc.stdin is not None
            proc.stdin.write(prompt.encode())
            await proc.stdin.drain()
            proc.stdin.close()
            result = await self._read(req, proc, progress, run_id, info.attempt, backend.parser(req.session_id))
        except asyncio.CancelledError:
            await kill_group(proc)
            self.logs.add(req.task_id, "event", "agent cancelled; process group killed", info.attempt)
            raise
        except BaseException:
            await kill_group(proc)
            raise
        finally:
            heartbeat.cancel()
            self._pidfile(req.task_id).remove()
            await contained.aclose()
            self.logs.end(run_id, utcnow())
            await self.logs.flush()  # every line of the run, and its end, stored before it reports its end
            # the ledger from the gateway's meter, also for a run that timed out or was cancelled
            await asyncio.to_thread(self.budgets.record, req, gateway.meter, run_id, progress.session_id)
        self._marker(req.task_id).unlink(missing_ok=True)
        # the 80% warnings and which budget stopped the run; the cost is the gateway's, never the CLI's
        await self.budgets.settle(req, gate, gateway.meter, result, progress.final, info.attempt)
        # the CLI's turn count comes on a line the agent can write: no more turns than model requests
        result.num_turns = min(result.num_turns, gateway.meter.requests)
        if not result.is_error and not result.subtype:
            tail = await asyncio.to_thread(read_tail, stderr_path, 1500)  # the agent can write to it: unbounded
            result.is_error = True
            result.subtype = "no_result"
            result.result_text = scrub(
                f"the CLI exited ({proc.returncode}) without a result: {tail.strip()}", self.secrets
            ).strip()
        spent = TaskUpdate(
            task_id=req.task_id, session_id=result.session_id, add_cost_usd=result.cost_usd, add_turns=result.num_turns
        )
        await asyncio.to_thread(update_task, self.engine, spent)
        if not result.is_error:
            await asyncio.to_thread(self.board.mark_delivered, got)
        if self.finalize is not None and wants_push(req, result):  # commit and push here: no step of its own
            result = await push(req, result, self.finalize, self.run_dir, self._beat_interval())
        return result

    def _beat_interval(self) -> float:
        return max(0.5, min(5.0, self.cfg.temporal.heartbeat_timeout_seconds / 4))

    async def _heartbeat_loop(self, progress: _Progress) -> None:
        interval = self._beat_interval()
        while True:  # the first after one interval (activities/_heartbeat.py says why)
            await asyncio.sleep(interval)
            activity.heartbeat({"session_id": progress.session_id, "started": progress.started})

    async def _read(
        self,
        req: AgentRequest,
        proc: asyncio.subprocess.Process,
        progress: _Progress,
        run_id: int,
        attempt: int,
        parser: Parser,
    ) -> AgentResult:
        spec = req.agent
        start = last = time.monotonic()
        result = AgentResult(session_id=req.session_id)
        question: QuestionAsked | None = None
        last_touch = 0.0
        assert proc.stdout is not None
        while True:
            now = time.monotonic()
            idle_left = spec.idle_timeout_s - (now - last)
            total_left = spec.total_timeout_s - (now - start)
            try:
                raw = await asyncio.wait_for(proc.stdout.readline(), max(0.0, min(idle_left, total_left)))
            except TimeoutError:
                await kill_group(proc)
                if idle_left <= total_left:
                    msg = (
                        f"agent timed out: no output for {spec.idle_timeout_s / 60:g} minutes "
                        "(agent_activity_timeout_minutes); the agent was killed"
                    )
                else:
                    msg = (
                        f"agent timed out: ran longer than {spec.total_timeout_s / 60:g} minutes "
                        "(agent_timeout_minutes); the agent was killed"
                    )
                self.logs.add(req.task_id, "event", msg, attempt)
                raise ApplicationError(msg, type="AgentTimeout", non_retryable=True) from None
            if not raw:
                break
            last = time.monotonic()
            line = raw.decode(errors="replace")
            parsed = parser.parse(line)
            sid = parsed.session_id  # from JSON the agent may have written: any type
            if isinstance(sid, str) and not progress.started and SESSION_ID.fullmatch(sid):
                progress.session_id = parsed.session_id
                progress.started = True
                # the next beat carries it; until then the marker tells a retry on this host, as it does
                # for a crash before any beat
                self._marker(req.task_id).write_text(progress.session_id)
                # on the row at once: a cancelled or failed task is retried in this session
                upd = TaskUpdate(task_id=req.task_id, session_id=progress.session_id)
                await asyncio.to_thread(update_task, self.engine, upd)
            if parsed.logs:
                # batched with every run's lines (factory/store/logsink.py): the reader never waits on a write
                self.logs.add_many(req.task_id, [(e.kind, e.content) for e in parsed.logs], attempt, self.secrets)
            for text in parsed.texts:
                for obj in protocol_lines(text):
                    q = await protocol_line(self.board, req, obj, result, self.secrets)
                    if q is not None:
                        question = q
            if parsed.result is not None:
                r = parsed.result
                progress.final = r
                sid = r.get("session_id")  # the next run's `--resume`, and what `reap` looks for: its shape only
                result.session_id = sid if isinstance(sid, str) and SESSION_ID.fullmatch(sid) else progress.session_id
                errors = r.get("errors") or []
                text = r.get("result") or (
                    "; ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors)
                )
                result.result_text = scrub(text or "", self.secrets)
                result.is_error = bool(r.get("is_error")) or r.get("subtype") != "success"
                result.subtype = r.get("subtype") or ""
                turns = r.get("num_turns")
                result.num_turns = turns if isinstance(turns, int) and 0 < turns < 1_000_000 else 0
                # total_cost_usd is a hint for the log: the agent can write this line (/proc/<cli>/fd/1)
            if last - last_touch > 1.0:
                last_touch = last
                self.logs.mark(run_id, utcnow(), parsed.logs[-1].content if parsed.logs else None, self.secrets)
        await proc.wait()
        if question is not None and not result.is_error:
            result.question = question
        return result
