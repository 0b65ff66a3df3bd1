"""Git and GitHub steps' wire forms: preparing, finalizing and cleaning a task's worktree, its pull request.

New fields always get defaults, so that the histories of running workflows stay readable
(docs/versioning.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from factory.contracts.tasks import ChangesResult, RepoRef, TaskEvent, WorkspaceInfo  # noqa: F401 (ChangesResult: re-exported)


@dataclass
class PrepareInput:
    task_id: int
    title: str
    repo: RepoRef
    branch: str | None = None  # continue an existing branch
    # failover: continue `branch` from the remote where it was pushed, else start it afresh from the base
    moved: bool = False
    # the task's start, announced by this step while it makes the worktree: its row (branch, base, host) and
    # this event (its branch filled in) on the board; the channels that want it come back in
    # `WorkspaceInfo.announced` (patch started-in-prepare: no local activities between prepare and the agent)
    started: TaskEvent | None = None


@dataclass
class FinalizeInput:
    task_id: int
    workspace: WorkspaceInfo
    repo: RepoRef
    message: str
    push: bool = True


@dataclass
class CleanupInput:
    task_id: int
    workspace: WorkspaceInfo
    repo: RepoRef
    wip_message: str = ""
    # the task is done: finalize pushed everything it committed, and nothing has written here since
    pushed: bool = False
    environments: list[str] = field(default_factory=list)  # kinds of the task's environments to remove first


@dataclass
class PullRequestInput:
    task_id: int | None
    repo: RepoRef
    branch: str
    base_branch: str
    title: str
    body: str
    workflow_run_id: int | None = None
    draft: bool = False  # Factory's checks still fail after the agent's last round (proof of work)


@dataclass
class PullRequestResult:
    url: str
    number: int
    created: bool
