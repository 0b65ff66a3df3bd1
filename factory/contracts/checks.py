"""Proof of work's wire forms: what the check activity is given and what it answers.

New fields always get defaults (docs/versioning.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from factory.contracts.tasks import RepoRef, WorkspaceInfo


@dataclass
class ChecksInput:
    """Check the commit Factory pushed for a task (`commit`: finalize's head, Factory's own record)."""

    task_id: int
    repo: RepoRef
    workspace: WorkspaceInfo
    commit: str
    round: int = 1


@dataclass
class ChecksResult:
    """The verdict of one round of checks and the text that sends the agent back when it failed."""

    verdict: str  # passed | failed | none
    commit: str = ""
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)  # "name: first error line"
    feedback: str = ""  # the next round's prompt when the verdict is failed
    summary: str = ""  # the verdict line for notifications


@dataclass
class EvidenceCommentInput:
    """Put (or edit in place) the evidence comment on the task's PR."""

    task_id: int
    repo: RepoRef
    pr_number: int
