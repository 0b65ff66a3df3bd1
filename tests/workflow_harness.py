"""Factory's real workflows against scripted activities registered by name, on a real Temporal server.

The workflows call activities by the names in factory/contracts/activities.py; `Scripted` registers
an implementation under each name that records its input and answers from a script (the agent's
replies, the commits a push finds, whether a budget holds). Nothing of the workflow is replaced: the
task story, the step interpreter, handoffs and budget questions run as in production, in the same
workflow sandbox (temporal/workflow_sandbox.py). Used by tests/test_workflow_logic.py and by
tests/histories/record.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from factory.contracts import (
    AgentRequest,
    AgentResult,
    AgentSpec,
    AnswerInput,
    AnswerRecord,
    BudgetStop,
    ChangesResult,
    CleanupEnvInput,
    CleanupInput,
    FinalizeInput,
    HandoffInput,
    HoldCheck,
    HoldState,
    MemoryCall,
    MemoryReply,
    NotifyInput,
    PendingQuestion,
    PollSpan,
    PrepareInput,
    PullRequestInput,
    PullRequestResult,
    QuestionAsked,
    QuestionInput,
    RecallInput,
    RememberTaskInput,
    RepoRef,
    ScheduledWork,
    ScheduledWorkResult,
    StepTaskInput,
    TaskEvent,
    TaskInput,
    TaskUpdate,
    WorkflowRunInput,
    WorkflowRunUpdate,
    WorkflowStepSpec,
    WorkspaceInfo,
)
from temporal.workflow_sandbox import workflow_runner
from workflows.memory_service import MemoryServiceWorkflow
from workflows.registry import WORKFLOWS

Reply = AgentResult | Callable[[AgentRequest], AgentResult]


def reply(text: str = "done", **kw: Any) -> AgentResult:
    return AgentResult(session_id="s-1", result_text=text, num_turns=1, cost_usd=0.01, **kw)


def pushed(text: str = "done", commits: int = 1) -> Callable[[AgentRequest], AgentResult]:
    """A reply whose run committed and pushed its work itself, when the workflow asked it to (agent-pushes)."""

    def run(req: AgentRequest) -> AgentResult:
        if req.finalize is None:
            return reply(text)
        files = ["a.py"] if commits else []
        return reply(
            text,
            changes=ChangesResult(
                committed=commits > 0, pushed=commits > 0, commits_ahead=commits, changed_files=files
            ),
        )

    return run


def asks(text: str, options: list[str] | None = None) -> AgentResult:
    return reply("", question=QuestionAsked(text, options))


def verdict(v: str, *issues: str) -> AgentResult:
    """A reviewer's reply with a JSON verdict; each issue is a major one (conditions test for those)."""
    listed = ", ".join(f'{{"file": "a.py", "severity": "major", "comment": "{i}"}}' for i in issues)
    return reply(f'Reviewed. {{"verdict": "{v}", "issues": [{listed}]}}')


def budget_stop(key: str = "task", limit: float = 1.0, spent: float = 1.2) -> AgentResult:
    return reply("", subtype="budget", budget_stop=BudgetStop(key=key, label=f"this {key}", limit=limit, spent=spent))


def agent(agent_type: str = "coder") -> AgentSpec:
    return AgentSpec(agent_type=agent_type, system_prompt_file="prompts/coder.md", tools=[], total_timeout_s=60,
                     idle_timeout_s=60)  # fmt: skip


REPO = RepoRef(name="acme/web", url="file:///nowhere/acme-web.git", github="acme/web", configured=True)


@dataclass
class Scripted:
    """The activities of one test: scripted answers, and every call recorded as (name, input)."""

    task_queue: str = field(default_factory=lambda: f"fast-{uuid.uuid4().hex[:10]}")
    replies: dict[str, list[Reply]] = field(default_factory=dict)  # by agent type, in order
    commits: list[int] = field(default_factory=lambda: [1])  # commits_ahead of each push, the last repeats
    holds: list[bool] = field(default_factory=list)  # check_budget_hold's answers, then not held
    first_host_queue: str | None = None  # the queue of the first worktree (a lost host when nobody polls it)
    # clean_up_here's answer: True, done here (the worker holding the workflow task is the worktree's host);
    # False, not here; "fail", it raises
    here: bool | str = True
    calls: list[tuple[str, Any]] = field(default_factory=list)
    _questions: int = 0
    _tasks: int = 100

    def of(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]

    def updates(self) -> list[TaskUpdate]:
        return self.of("update_task")

    def _note(self, name: str, arg: Any) -> None:
        self.calls.append((name, arg))

    def activities(self) -> list[Callable[..., Any]]:
        s = self

        @activity.defn(name="run_agent")
        async def run_agent(req: AgentRequest) -> AgentResult:
            s._note("run_agent", req)
            queue = s.replies.get(req.agent.agent_type) or []
            if not queue:
                return reply(f"{req.agent.agent_type} done")
            r = queue.pop(0)
            return r(req) if callable(r) else r

        @activity.defn(name="stop_agent")
        async def stop_agent(task_id: int) -> bool:
            s._note("stop_agent", task_id)
            return True

        @activity.defn(name="record_question")
        async def record_question(inp: QuestionInput) -> PendingQuestion:
            s._note("record_question", inp)
            s._questions += 1
            return PendingQuestion(id=s._questions, text=inp.text, options=inp.options, asked_at="2026-01-01T00:00Z")

        @activity.defn(name="close_question")
        async def close_question(inp: AnswerRecord) -> None:
            s._note("close_question", inp)

        @activity.defn(name="record_answer")
        async def record_answer(inp: AnswerRecord) -> None:
            s._note("record_answer", inp)

        @activity.defn(name="publish_event")
        async def publish_event(event: TaskEvent) -> list[str]:
            s._note("publish_event", event)
            return ["telegram"] if event.kind == "question" else []

        @activity.defn(name="send_notification")
        async def send_notification(inp: NotifyInput) -> None:
            s._note("send_notification", inp)

        @activity.defn(name="update_task")
        async def update_task(upd: TaskUpdate) -> None:
            s._note("update_task", upd)

        @activity.defn(name="update_workflow_run")
        async def update_workflow_run(upd: WorkflowRunUpdate) -> None:
            s._note("update_workflow_run", upd)

        @activity.defn(name="check_budget_hold")
        async def check_budget_hold(inp: HoldCheck) -> HoldState:
            s._note("check_budget_hold", inp)
            held = s.holds.pop(0) if s.holds else False
            return HoldState(held=held, reason="held: daily budget reached" if held else "")

        @activity.defn(name="prepare_workspace")
        async def prepare_workspace(inp: PrepareInput) -> WorkspaceInfo:
            s._note("prepare_workspace", inp)
            first = len(s.of("prepare_workspace")) == 1
            q = s.first_host_queue if first and s.first_host_queue else s.task_queue
            host = "lost-host" if q != s.task_queue else "this-host"
            branch = inp.branch or f"factory/{inp.task_id}"
            announced = None
            if inp.started is not None:  # as the real step: the start recorded and its event posted here
                s._note("update_task", TaskUpdate(task_id=inp.task_id, branch=branch, base_branch="main", host=host))
                announced = await publish_event(dataclasses.replace(inp.started, branch=branch))
            return WorkspaceInfo(
                path=f"/work/tasks/{inp.task_id}", branch=branch, base_branch="main",
                host=host, host_queue=q, agent_queue=q, carried="abc123 WIP" if inp.moved else "",
                announced=announced,
            )  # fmt: skip

        @activity.defn(name="finalize_changes")
        async def finalize_changes(inp: FinalizeInput) -> ChangesResult:
            s._note("finalize_changes", inp)
            n = s.commits.pop(0) if len(s.commits) > 1 else s.commits[0]
            return ChangesResult(committed=n > 0, pushed=n > 0, commits_ahead=n, changed_files=["a.py"] if n else [])

        @activity.defn(name="cleanup_workspace")
        async def cleanup_workspace(inp: CleanupInput) -> None:
            s._note("cleanup_workspace", inp)

        @activity.defn(name="clean_up_here")
        async def clean_up_here(inp: CleanupInput) -> bool:
            s._note("clean_up_here", inp)
            if s.here == "fail":
                raise RuntimeError("the worktree could not be removed")
            return bool(s.here)

        @activity.defn(name="ping_host")
        async def ping_host() -> str:
            s._note("ping_host", None)
            return "this-host"

        @activity.defn(name="recall_memories")
        async def recall_memories(inp: RecallInput) -> str:
            s._note("recall_memories", inp)
            return ""

        @activity.defn(name="remember_task")
        async def remember_task(inp: RememberTaskInput) -> str | None:
            s._note("remember_task", inp)
            return None

        @activity.defn(name="serve_memory")
        async def serve_memory(call: MemoryCall) -> MemoryReply:
            s._note("serve_memory", call)
            return MemoryReply(available=True, text="recalled")

        @activity.defn(name="create_step_task")
        async def create_step_task(inp: StepTaskInput) -> int:
            s._note("create_step_task", inp)
            s._tasks += 1
            return s._tasks

        @activity.defn(name="record_handoff")
        async def record_handoff(inp: HandoffInput) -> int:
            s._note("record_handoff", inp)
            return len(s.of("record_handoff"))

        @activity.defn(name="open_pull_request")
        async def open_pull_request(inp: PullRequestInput) -> PullRequestResult:
            s._note("open_pull_request", inp)
            return PullRequestResult(url=f"https://github.com/{inp.repo.github}/pull/7", number=7, created=True)

        @activity.defn(name="start_scheduled_work")
        async def start_scheduled_work(work: ScheduledWork) -> ScheduledWorkResult:
            s._note("start_scheduled_work", work)
            return ScheduledWorkResult(task_id=42)

        @activity.defn(name="poll_telegram")
        async def poll_telegram(span: PollSpan) -> None:
            s._note("poll_telegram", span)

        @activity.defn(name="poll_pull_requests")
        async def poll_pull_requests() -> None:
            s._note("poll_pull_requests", None)

        @activity.defn(name="prune_records")
        async def prune_records() -> None:
            s._note("prune_records", None)

        @activity.defn(name="cleanup_task_environments")
        async def cleanup_task_environments(inp: CleanupEnvInput) -> int:
            s._note("cleanup_task_environments", inp)
            return 0

        return [v for v in locals().values() if hasattr(v, "__temporal_activity_definition")]

    def worker(self, client: Client) -> Worker:
        return Worker(
            client, task_queue=self.task_queue, workflows=[*WORKFLOWS, MemoryServiceWorkflow],
            activities=self.activities(), workflow_runner=workflow_runner(),
        )  # fmt: skip


def task_input(task_id: int = 1, **kw: Any) -> TaskInput:
    kw.setdefault("agent", agent())
    kw.setdefault("repo", REPO)
    return TaskInput(task_id=task_id, title="Add a health check", description="GET /health", **kw)


def run_input(steps: list[WorkflowStepSpec], run_id: int = 1, **kw: Any) -> WorkflowRunInput:
    kw.setdefault("id_prefix", f"{uuid.uuid4().hex[:8]}-")  # child task ids unique on a shared server
    return WorkflowRunInput(run_id=run_id, name="code_review", title="Add a health check", description="GET /health",
                            repo=REPO, steps=steps, **kw)  # fmt: skip


def code_review_steps() -> list[WorkflowStepSpec]:
    """config.yml's code_review: coder, reviewer, and a revision looping back to the review on issues."""
    return [
        WorkflowStepSpec(index=0, agent=agent("coder"), output="initial_code"),
        WorkflowStepSpec(index=1, agent=agent("reviewer"), input="initial_code", output="review"),
        WorkflowStepSpec(index=2, agent=agent("coder_revision"), input="review", output="revision",
                         condition="has_issues", loop_to="review", prompt_template="Address: {issues}"),
    ]  # fmt: skip


async def answer_when_asked(handle: WorkflowHandle[Any, Any], text: str, timeout: float = 20) -> PendingQuestion:
    """Wait until the task shows a pending question (a query, polled), then answer it through the Update."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        pq = await handle.query("pending_question", result_type=PendingQuestion | None)  # type: ignore[arg-type]
        if pq is not None:
            await handle.execute_update("answer", AnswerInput(answer=text, question_id=pq.id), result_type=str)
            return pq
        if loop.time() > end:
            raise AssertionError("the task never asked its question")
        await asyncio.sleep(0.05)  # polling a query: the question is recorded by an activity first
