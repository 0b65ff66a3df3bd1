"""The activities' names and signatures, as workflows call them.

Workflows call activities through these declarations (`workflow.execute_activity(acts.prepare_workspace,
...)`): Temporal takes the activity's name and its result type from them, so a workflow never imports an
activity's implementation (nor sqlalchemy, httpx, the store or the sandbox that come with it). The worker
registers the implementations (activities/*.py) under the same names; tests/test_workflow_logic.py checks
that every declaration here matches a registered implementation's name, parameters and result.

Changing one of these is changing a wire contract: see docs/versioning.md (a new activity name when the
input or result changes incompatibly).
"""

from __future__ import annotations

from temporalio import activity

from factory.contracts.agents import AgentRequest, AgentResult
from factory.contracts.checks import ChecksInput, ChecksResult, EvidenceCommentInput
from factory.contracts.memory import MemoryCall, MemoryReply, RecallInput, RememberTaskInput
from factory.contracts.records import (
    AnswerRecord,
    CleanupEnvInput,
    HoldCheck,
    HoldState,
    NotifyInput,
    PollSpan,
    QuestionInput,
    ScheduledWork,
    ScheduledWorkResult,
)
from factory.contracts.tasks import PendingQuestion, TaskEvent, TaskUpdate, WorkspaceInfo
from factory.contracts.workflow_runs import HandoffInput, StepTaskInput, WorkflowRunUpdate
from factory.contracts.workspace import (
    ChangesResult,
    CleanupInput,
    FinalizeInput,
    PrepareInput,
    PullRequestInput,
    PullRequestResult,
)

# The bodies never run: a workflow's call is scheduled by name and runs on a worker that registered
# the implementation. Each declaration names the module that implements it.


@activity.defn
async def run_agent(req: AgentRequest) -> AgentResult:  # activities/agent.py
    raise NotImplementedError


@activity.defn
async def stop_agent(task_id: int) -> bool:  # activities/agent_stop.py
    raise NotImplementedError


@activity.defn
async def record_question(inp: QuestionInput) -> PendingQuestion:  # activities/records.py
    raise NotImplementedError


@activity.defn
async def close_question(inp: AnswerRecord) -> None:  # activities/records.py
    raise NotImplementedError


@activity.defn
async def record_answer(inp: AnswerRecord) -> None:  # activities/records.py
    raise NotImplementedError


@activity.defn
async def publish_event(event: TaskEvent) -> list[str]:  # activities/records.py
    raise NotImplementedError


@activity.defn
async def send_notification(inp: NotifyInput) -> None:  # activities/records.py
    raise NotImplementedError


@activity.defn
async def update_task(upd: TaskUpdate) -> None:  # activities/records.py
    raise NotImplementedError


@activity.defn
async def update_workflow_run(upd: WorkflowRunUpdate) -> None:  # activities/records.py
    raise NotImplementedError


@activity.defn
async def check_budget_hold(inp: HoldCheck) -> HoldState:  # activities/budgets.py
    raise NotImplementedError


@activity.defn
async def prepare_workspace(inp: PrepareInput) -> WorkspaceInfo:  # activities/workspace.py
    raise NotImplementedError


@activity.defn
async def finalize_changes(inp: FinalizeInput) -> ChangesResult:  # activities/workspace.py
    raise NotImplementedError


@activity.defn
async def cleanup_workspace(inp: CleanupInput) -> None:  # activities/workspace.py
    raise NotImplementedError


@activity.defn
async def clean_up_here(inp: CleanupInput) -> bool:  # activities/workspace.py; a local activity
    raise NotImplementedError


@activity.defn
async def ping_host() -> str:  # activities/workspace.py
    raise NotImplementedError


@activity.defn
async def recall_memories(inp: RecallInput) -> str:  # activities/memory.py
    raise NotImplementedError


@activity.defn
async def remember_task(inp: RememberTaskInput) -> str | None:  # activities/memory.py
    raise NotImplementedError


@activity.defn
async def serve_memory(call: MemoryCall) -> MemoryReply:  # activities/memory.py
    raise NotImplementedError


@activity.defn
async def create_step_task(inp: StepTaskInput) -> int:  # activities/workflow_runs.py
    raise NotImplementedError


@activity.defn
async def record_handoff(inp: HandoffInput) -> int:  # activities/workflow_runs.py
    raise NotImplementedError


@activity.defn
async def open_pull_request(inp: PullRequestInput) -> PullRequestResult:  # activities/github.py
    raise NotImplementedError


@activity.defn
async def start_scheduled_work(work: ScheduledWork) -> ScheduledWorkResult:  # activities/schedules.py
    raise NotImplementedError


@activity.defn
async def poll_telegram(span: PollSpan) -> None:  # activities/singletons.py
    raise NotImplementedError


@activity.defn
async def poll_pull_requests() -> None:  # activities/singletons.py
    raise NotImplementedError


@activity.defn
async def prune_records() -> None:  # activities/singletons.py
    raise NotImplementedError


@activity.defn
async def cleanup_task_environments(inp: CleanupEnvInput) -> int:  # activities/environments.py
    raise NotImplementedError


@activity.defn
async def run_checks(inp: ChecksInput) -> ChecksResult:  # activities/checks.py
    raise NotImplementedError


@activity.defn
async def post_evidence_comment(inp: EvidenceCommentInput) -> None:  # activities/checks.py
    raise NotImplementedError
