"""Factory's pull requests: which tasks and runs own a PR, who may drive them, and follow-up runs on them.

A follow-up (a review's revision, an `@factory` instruction, a CI fix, a merge of the moved base) is a
`coder_revision` task on the PR's branch, told what to do in its prompt context; its push updates
the same PR (the PR step finds the open PR for the branch).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select

from factory.config import FactoryConfig
from factory.git.repos import RepoError, discoverable, resolve_repo
from factory.integrations.claims import claimed, start_or_forget
from factory.launcher import Launcher, NewTask, TaskStart
from factory.store.tables import FINISHED, Task, WorkflowRun, session_scope

log = logging.getLogger("factory.github")

BRANCH_PREFIX = "factory/"
WRITE_ACCESS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})


def obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def may_write(cfg: FactoryConfig, author_association: Any, login: Any) -> bool:
    """Whether an author may drive Factory: write access, or listed in `github.allowed_users`."""
    if str(author_association or "").upper() in WRITE_ACCESS:
        return True
    name = str(login or "").lower()
    return bool(name) and name in {u.lower() for u in cfg.github.allowed_users}


def github_of(cfg: FactoryConfig, repo: str) -> str | None:
    """The owner/name of a configured (or owner/name) repo, None when it is not on GitHub."""
    try:
        return resolve_repo(cfg, repo).github
    except RepoError:
        return None


def repo_for(cfg: FactoryConfig, repo_full: str) -> str | None:
    """The configured repo name for a GitHub owner/name, or owner/name itself when its owner is `default_org`.

    One GitHub App can be installed on several accounts: an event from another owner's repository
    must not clone it and run an agent there, so discovery stays inside `default_org`.
    """
    for name in cfg.repos:
        if (github_of(cfg, name) or "").lower() == repo_full.lower():
            return name
    return repo_full if "/" in repo_full and discoverable(cfg, repo_full) and github_of(cfg, repo_full) else None


def _tasks_of(engine: Engine, cfg: FactoryConfig, repo_full: str, branch: str) -> list[Task]:
    with session_scope(engine) as s:
        rows = s.exec(select(Task).where(Task.branch == branch).order_by(Task.id)).all()
    return [t for t in rows if (github_of(cfg, t.repo) or "").lower() == repo_full.lower()]


def _runs_of(engine: Engine, cfg: FactoryConfig, repo_full: str, branch: str, run_ids: set[int]) -> list[WorkflowRun]:
    with session_scope(engine) as s:
        on_branch = s.exec(select(WorkflowRun).where(WorkflowRun.branch == branch)).all()
        ids = run_ids | {r.id for r in on_branch if (github_of(cfg, r.repo) or "").lower() == repo_full.lower()}
        return [r for r in (s.get(WorkflowRun, i) for i in sorted(ids)) if r is not None]


def pr_work(
    cfg: FactoryConfig, engine: Engine, repo_full: str, number: int, branch: str
) -> tuple[list[Task], list[WorkflowRun]]:
    """The branch's tasks and runs that belong to PR `number`: none unless one of them recorded that number.

    Rows that recorded no PR yet (a handoff's task before its PR step) go with the PR of the branch.
    """
    tasks = _tasks_of(engine, cfg, repo_full, branch)
    runs = _runs_of(engine, cfg, repo_full, branch, {t.workflow_run_id for t in tasks if t.workflow_run_id})
    if not any(r.pr_number == number for r in [*tasks, *runs]):
        return [], []
    return [t for t in tasks if t.pr_number in (None, number)], [r for r in runs if r.pr_number in (None, number)]


def factory_pr(repo_full: str, pr: dict[str, Any]) -> str | None:
    """Why `pr` is not one of Factory's own PR branches (a fork, another branch), or None when it is."""
    head = obj(pr.get("head"))
    if not str(head.get("ref") or "").startswith(BRANCH_PREFIX) or not isinstance(pr.get("number"), int):
        return "not a Factory branch"
    head_repo = str(obj(head.get("repo")).get("full_name") or repo_full)
    if head_repo.lower() != repo_full.lower():
        return "the pull request's head is another repository (a fork)"
    return None


@dataclass
class FollowUp:
    """A follow-up run to start on a Factory PR's branch."""

    title: str
    description: str
    context: str
    claim_kind: str  # with claim_key: the event it answers, started at most once
    claim_key: str


async def start_follow_up(
    cfg: FactoryConfig, engine: Engine, launcher: Launcher, repo_full: str, pr: dict[str, Any], follow: FollowUp
) -> dict[str, Any]:
    """Start a coder_revision task on the PR's branch (once per claim); what happened, with `task_id`."""
    branch = str(obj(pr.get("head")).get("ref") or "")
    number = int(pr["number"])
    tasks, runs = await asyncio.to_thread(pr_work, cfg, engine, repo_full, number, branch)
    if not tasks and not runs:
        return {"status": "ignored", "reason": "no Factory task has this pull request"}
    busy = [f"task #{t.id}" for t in tasks if t.status not in FINISHED]
    busy += [f"workflow run #{r.id}" for r in runs if r.status in ("pending", "running")]
    if busy:
        return {"status": "ignored", "reason": f"{busy[-1]} is still working on this branch"}
    async with claimed(engine, follow.claim_kind, follow.claim_key) as first:
        if not first:
            return {"status": "ignored", "reason": "a run for this event was started already"}
        run = runs[0] if runs else None
        parent_id = tasks[-1].id if tasks else None
        issue = (run.plane_issue_id if run else None) or next(
            (t.plane_issue_id for t in tasks if t.plane_issue_id), None
        )
        new = NewTask(
            title=follow.title[:500],
            description=follow.description,
            repo=tasks[-1].repo if tasks else run.repo,
            agent_type="coder_revision",
            parent_task_id=parent_id,
            plane_issue_id=issue,
            branch=branch,  # on the branch from the start, so a second event sees the branch is busy
            pr_url=pr.get("html_url"),
            pr_number=number,
            pr_state="open",
        )
        start = TaskStart(branch=branch, context=follow.context, parent_task_id=parent_id)
        task = await launcher.create_task(new, run=False)
        await start_or_forget(launcher, engine, task, start)  # a failed start leaves no queued row behind
    log.info("%s on %s#%s started task #%s", follow.claim_kind, repo_full, number, task.id)
    return {"status": "started", "task_id": task.id, "branch": branch}


def root_title(engine: Engine, cfg: FactoryConfig, repo_full: str, number: int, branch: str) -> str:
    """The title of the work that opened the PR."""
    tasks, runs = pr_work(cfg, engine, repo_full, number, branch)
    return runs[0].title if runs else (tasks[0].title if tasks else branch)
