"""Dataclasses that cross the workflow/activity/service boundary, by subject.

Workflows import only these (plus temporalio, the standard library and factory.domain's pure
functions); the worker passes this package through Temporal's workflow sandbox. New fields always
get defaults so that the histories of running workflows stay readable (docs/versioning.md).
"""

from __future__ import annotations

from factory.contracts.agents import (
    AgentRequest,
    AgentResult,
    BudgetStop,
    QuestionAsked,
)
from factory.contracts.memory import (
    MemoryCall,
    MemoryHit,
    MemoryRecord,
    MemoryReply,
    RecallInput,
    RememberTaskInput,
)
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
from factory.contracts.tasks import (
    AgentSpec,
    AnswerInput,
    PendingQuestion,
    RepoRef,
    TaskEvent,
    TaskInput,
    TaskResult,
    TaskUpdate,
    WorkspaceInfo,
)
from factory.contracts.workflow_runs import (
    HandoffInput,
    StepOutput,
    StepTaskInput,
    WorkflowRunInput,
    WorkflowRunResult,
    WorkflowRunUpdate,
    WorkflowStepSpec,
)
from factory.contracts.workspace import (
    ChangesResult,
    CleanupInput,
    FinalizeInput,
    PrepareInput,
    PullRequestInput,
    PullRequestResult,
)

__all__ = [
    "AgentRequest",
    "AgentResult",
    "AgentSpec",
    "AnswerInput",
    "AnswerRecord",
    "BudgetStop",
    "ChangesResult",
    "CleanupEnvInput",
    "CleanupInput",
    "FinalizeInput",
    "HandoffInput",
    "HoldCheck",
    "HoldState",
    "MemoryCall",
    "MemoryHit",
    "MemoryRecord",
    "MemoryReply",
    "NotifyInput",
    "PendingQuestion",
    "PollSpan",
    "PrepareInput",
    "PullRequestInput",
    "PullRequestResult",
    "QuestionAsked",
    "QuestionInput",
    "RecallInput",
    "RememberTaskInput",
    "RepoRef",
    "ScheduledWork",
    "ScheduledWorkResult",
    "StepOutput",
    "StepTaskInput",
    "TaskEvent",
    "TaskInput",
    "TaskResult",
    "TaskUpdate",
    "WorkflowRunInput",
    "WorkflowRunResult",
    "WorkflowRunUpdate",
    "WorkflowStepSpec",
    "WorkspaceInfo",
]
