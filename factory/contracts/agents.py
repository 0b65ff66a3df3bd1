"""An agent run's wire forms: the request, how it ended, the question it asked, the budget that stopped it.

New fields always get defaults, so that the histories of running workflows stay readable
(docs/versioning.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from factory.contracts.tasks import AgentSpec, ChangesResult
from factory.contracts.workspace import FinalizeInput


@dataclass
class QuestionAsked:
    text: str
    options: list[str] | None = None


@dataclass
class AgentRequest:
    task_id: int
    agent: AgentSpec
    cwd: str
    prompt: str
    session_id: str
    resume: bool = False
    workflow_run_id: int | None = None
    repo_name: str = ""
    title: str = ""
    description: str = ""
    branch: str = ""
    with_context: bool = True  # add memory recall and board messages to the prompt
    budget_limits: dict[str, float] = field(default_factory=dict)  # budgets raised by an answer, by key
    resume_from_task: int | None = None  # a follow-up round: the finished round whose Claude session it resumes
    # when the run ends the session (factory.domain.review.ends_session), commit and push its work in the same
    # activity: one activity and one workflow task fewer per agent (unset: the workflow's own finalize step)
    finalize: FinalizeInput | None = None
    require_verdict: bool = False  # a reviewer: its reply ends the session only with a verdict


@dataclass
class BudgetStop:
    """The budget that stopped (or would not start) a run: its key, what it is, its limit and what was spent."""

    key: str  # run | task | workflow | repo_daily | daily (factory.domain.budgets)
    label: str
    limit: float
    spent: float


@dataclass
class AgentResult:
    """How one agent run ended: its reply, its question if it asked one, what it cost."""

    session_id: str
    result_text: str = ""
    is_error: bool = False
    subtype: str = ""
    num_turns: int = 0
    cost_usd: float = 0.0
    question: QuestionAsked | None = None
    learnings: list[str] = field(default_factory=list)
    budget_stop: BudgetStop | None = None  # set when a budget ended the run (or kept it from starting)
    changes: ChangesResult | None = None  # what the run's own finalize committed and pushed (AgentRequest.finalize)
