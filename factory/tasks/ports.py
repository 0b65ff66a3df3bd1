"""What the task service needs from outside the core: a workflow engine and a repo checker.

The engine port is deliberately narrow: start a workflow, send it an update, cancel it, wait for it
to close, read its stage, name its id. Every rule about when to do which lives in the service.
"""

from __future__ import annotations

from typing import Any, Protocol

from factory.config import FactoryConfig
from factory.config_sections import ScheduleConfig
from factory.contracts import AnswerInput, RepoRef, TaskInput, WorkflowRunInput
from factory.git.commands import git
from factory.git.repos import git_env
from factory.specs import resolve_checked


class WorkflowEngine(Protocol):
    """Starts and talks to Factory's workflows; implemented by `temporal.launcher.TemporalEngine`."""

    def task_workflow_id(self, task_id: int) -> str:
        """The workflow id of a task's TaskWorkflow."""
        ...

    def run_workflow_id(self, run_id: int) -> str:
        """The workflow id of a configured workflow run."""
        ...

    async def check_health(self) -> None:
        """Raise when the engine cannot be reached."""
        ...

    async def start_task(self, inp: TaskInput, agent_type: str, again: bool = False) -> None:
        """Start a task's workflow; `again`: a new run after a failed or cancelled one.

        Raises:
            AlreadyRunning: a run of it exists (a running one, or with `again` a completed one).
        """
        ...

    async def start_run(self, inp: WorkflowRunInput) -> None:
        """Start a configured workflow run's workflow."""
        ...

    async def answer(self, task_id: int, answer: AnswerInput) -> None:
        """Send the answer as the task workflow's `answer` update.

        Raises:
            AnswerRefused: the workflow refused it (stale, duplicate), or it is not running.
        """
        ...

    async def cancel(self, workflow_id: str) -> bool:
        """Ask the workflow to cancel; False when it never started (the engine knows no such workflow)."""
        ...

    async def wait_closed(self, workflow_id: str, timeout: float) -> bool:
        """Wait until the workflow's last run has closed (any outcome, or none at all); False on timeout."""
        ...

    async def stage(self, task_id: int) -> str | None:
        """The task workflow's Stage search attribute; None when it never started."""
        ...


class ScheduleBook(Protocol):
    """Named schedules that start tasks or runs (Temporal Schedules); answers are the engine's own reports."""

    async def list(self) -> list[Any]: ...

    async def create(self, name: str, spec: ScheduleConfig) -> Any:
        """Create it and return its report (LaunchError when the engine refuses the spec)."""
        ...

    async def describe(self, name: str) -> Any: ...

    async def pause(self, name: str, paused: bool) -> None: ...

    async def trigger(self, name: str) -> None: ...

    async def delete(self, name: str) -> None: ...


class RepoChecker(Protocol):
    """Resolves repo names and asks a remote what it holds."""

    async def resolve(self, repo: str) -> RepoRef:
        """The repo's reference, checked reachable when it is not configured (LaunchError otherwise)."""
        ...

    async def has_branch(self, ref: RepoRef, branch: str) -> bool:
        """Whether the remote has `branch`."""
        ...


class GitRepoChecker:
    """The real checker: config.yml's repos, and `git ls-remote` for the rest and for branches."""

    def __init__(self, cfg: FactoryConfig):
        self.cfg = cfg

    async def resolve(self, repo: str) -> RepoRef:
        return await resolve_checked(self.cfg, repo)

    async def has_branch(self, ref: RepoRef, branch: str) -> bool:
        """A task that failed before its first push has no branch on the remote."""
        out = await git(
            "ls-remote", "--heads", "--end-of-options", ref.url, f"refs/heads/{branch}",
            env=git_env(self.cfg, ref.url), git_dir=None, timeout=60,
        )  # fmt: skip
        return bool(out.strip())
