"""The words of a task's lifecycle that every layer shares: what to create and start, and what went wrong.

The exceptions say what went wrong in a way the API turns into a status code: `LaunchError` -> 422,
`NotFound` -> 404, `Conflict` (and its kinds) -> 409. They live here, at the bottom of the core, so
the store's reads can raise `NotFound` without importing the task service above it.
"""

from __future__ import annotations

from dataclasses import dataclass


class LaunchError(ValueError):
    """Bad input for a task or a run (unknown repo, agent type or workflow): the message says what (-> 422)."""


class NotFound(LookupError):
    """The task, run or message named does not exist (-> 404)."""


class Conflict(Exception):
    """The request does not fit the current state of a task or run (-> 409); the message says why."""


class AlreadyRunning(Conflict):
    """The task's workflow was started before."""


class AnswerRefused(Conflict):
    """The task cannot take this answer now (not waiting, a stale or duplicate answer)."""


@dataclass
class NewTask:
    """A task row to create: what the API, an inbound event or a handoff asks for."""

    title: str
    repo: str
    description: str = ""
    agent_type: str | None = None  # None: the repo's default agent
    backend: str | None = None  # the agent CLI (factory/backends/); None: the agent template's
    parent_task_id: int | None = None
    plane_issue_id: str | None = None
    branch: str | None = None  # a handoff or revision continues an existing branch
    pr_url: str | None = None
    pr_number: int | None = None
    pr_state: str | None = None


@dataclass
class TaskStart:
    """How a task's workflow starts: on an existing branch, with extra prompt context, from a parent."""

    branch: str | None = None
    context: str = ""
    parent_task_id: int | None = None
    resume_session: str | None = None  # a retry resumes the agent's CLI session where it was saved
    resume_from_task: int | None = None  # a follow-up round: the finished round whose home holds that session


@dataclass
class Cancelled:
    """What a cancel did: `signalled` when a workflow was asked to stop, else the row was marked cancelled."""

    signalled: bool
