"""GitHub events: a Factory PR closed (webhook or poll), and a review that requests changes.

- `pull_request` closed on a Factory branch records `merged` / `closed` as `pr_state` on every task
  and workflow run of the branch, moves their Plane issue to `done` when merged, and removes the
  tasks' preview environments.
- `pull_request_review` submitted with state `changes_requested` on a Factory PR starts a
  `coder_revision` task on the same branch; its prompt carries the review body and its comments,
  and its push updates the same PR (the PR step finds the open PR for the branch).
- Without `github.webhook_secret`, a background loop asks GitHub every `github.pr_poll_minutes`
  for the state of open Factory PRs instead.

Only Factory's own PRs count: the head repository is the base repository (a fork's PR may name its
branch `factory/task-N-...`) and the PR number is the one recorded on the branch's tasks. Only a
review by someone with write access (`author_association` OWNER, MEMBER or COLLABORATOR, or a login
in `github.allowed_users`) starts a revision. Events of a repository that is neither configured nor
owned by `default_org` (nor a task's, started through the API) are ignored. Anything ignored gets
one log line naming why.

Issues, issue comments (answers and `@factory` mentions), check suites, workflow runs and pushes
are handled by `issues`, `mentions` and `checks` beside this module.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import select

from factory.config import FactoryConfig
from factory.environments.compose import namespace
from factory.environments.janitor import remove_previews_of_closed_pr
from factory.integrations.github import checks, issues, mentions
from factory.integrations.github.client import GitHubClient
from factory.integrations.github.links import set_threads
from factory.integrations.github.prs import (
    BRANCH_PREFIX,
    FollowUp,
    factory_pr,
    github_of,
    may_write,
    obj,
    pr_work,
    repo_for,
    start_follow_up,
)
from factory.integrations.plane.client import PlaneClient, PlaneError
from factory.launcher import Launcher
from factory.store.tables import Task, WorkflowRun, session_scope

log = logging.getLogger("factory.github")

_obj = obj
_github_of = github_of
_pr_work = pr_work


@dataclass
class PrClosed:
    """A Factory pull request was merged or closed (from the GitHub webhook or the PR poll)."""

    repo: str  # owner/name
    number: int
    branch: str
    merged: bool
    url: str | None = None
    task_ids: list[int] = field(default_factory=list)
    workflow_run_ids: list[int] = field(default_factory=list)


# Teardowns run in the background (a webhook answers at once); the set keeps them referenced until done.
_teardowns: set[asyncio.Task[None]] = set()


def _tear_down_previews(task_ids: list[int], ns: str) -> None:
    task = asyncio.get_running_loop().create_task(remove_previews_of_closed_pr(task_ids, ns))
    _teardowns.add(task)
    task.add_done_callback(_teardowns.discard)


def _record_state(
    cfg: FactoryConfig, engine: Engine, repo_full: str, number: int, branch: str, state: str
) -> tuple[list[int], list[int], list[str]] | None:
    """Set `pr_state` on the PR's tasks and runs: (task ids, run ids, Plane issues), None when nothing changed."""
    tasks, runs = _pr_work(cfg, engine, repo_full, number, branch)
    task_ids, run_ids = [t.id for t in tasks], [r.id for r in runs]
    with session_scope(engine) as s:
        rows = [*(s.get(Task, i) for i in task_ids), *(s.get(WorkflowRun, i) for i in run_ids)]
        changed = False
        for row in rows:
            if row is None or row.pr_state == state:
                continue
            row.pr_state = state
            if row.pr_number is None:
                row.pr_number = number
            s.add(row)
            changed = True
        s.commit()
        issues = sorted({r.plane_issue_id for r in rows if r is not None and r.plane_issue_id})
    return (task_ids, run_ids, issues) if changed else None


async def record_pr_closed(
    cfg: FactoryConfig,
    engine: Engine,
    http: httpx.AsyncClient,
    repo_full: str,
    number: int,
    branch: str,
    merged: bool,
    url: str | None = None,
) -> PrClosed | None:
    """Record the PR's end on its tasks and workflow runs, move Plane, remove previews (once)."""
    state = "merged" if merged else "closed"
    recorded = await asyncio.to_thread(_record_state, cfg, engine, repo_full, number, branch, state)
    if recorded is None:
        return None  # not Factory's, or told before (webhook and poll, or a redelivery)
    task_ids, run_ids, issues = recorded
    if merged and issues:
        plane = PlaneClient(cfg, http)
        if plane.configured:
            for issue in issues:
                try:
                    await plane.set_state(issue, "done")
                except PlaneError as exc:
                    log.warning("could not move Plane issue %s to done: %s", issue, exc)
    event = PrClosed(
        repo=repo_full,
        number=number,
        branch=branch,
        merged=merged,
        url=url,
        task_ids=task_ids,
        workflow_run_ids=run_ids,
    )
    log.info("PR %s#%s %s (tasks %s)", repo_full, number, state, task_ids)
    _tear_down_previews(task_ids, namespace(cfg.temporal.id_prefix))
    return event


async def handle_github_event(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    http: httpx.AsyncClient,
    event: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """Act on one verified, de-duplicated GitHub webhook; returns what happened.

    Every ignored event gets one log line naming why (a warning when it came from someone or
    somewhere Factory does not act for)."""
    out = await _handle(cfg, engine, launcher, http, event, payload)
    if out.get("status") == "ignored":
        reason = str(out.get("reason") or "")
        level = logging.WARNING if any(w in reason for w in _SUSPECT) else logging.INFO
        repo_full = _obj(payload.get("repository")).get("full_name")
        log.log(level, "ignored GitHub %s %s on %s: %s", event, payload.get("action") or "", repo_full, reason)
    return out


# reasons that name someone without access or a repository Factory does not serve
_SUSPECT = ("no write access", "another repository", "not a configured repository")


def _known_repo(cfg: FactoryConfig, engine: Engine, repo_full: str) -> bool:
    """Configured, inside `default_org`, or the repository of a task someone started through the API."""
    if repo_for(cfg, repo_full) is not None:
        return True
    with session_scope(engine) as s:
        for table in (Task, WorkflowRun):
            if s.exec(select(table.id).where(table.repo == repo_full).limit(1)).first() is not None:
                return True
    return False


async def _handle(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    http: httpx.AsyncClient,
    event: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    if event == "ping":
        return {"status": "pong"}
    pr = payload.get("pull_request")
    repo_full = str(_obj(payload.get("repository")).get("full_name") or "")
    if event in ("issues", "issue_comment", "check_suite", "workflow_run", "push") and not repo_full:
        raise ValueError("'repository.full_name' is required")
    if repo_full and not await asyncio.to_thread(_known_repo, cfg, engine, repo_full):
        return {"status": "ignored", "reason": f"{repo_full} is not a configured repository (nor in default_org)"}
    if event == "issues":
        return await issues.handle_issue_event(cfg, engine, launcher, http, repo_full, payload)
    if event == "issue_comment":
        return await mentions.handle_comment(cfg, engine, launcher, http, repo_full, payload)
    if event in ("check_suite", "workflow_run"):
        return await checks.handle_ci_event(cfg, engine, launcher, http, event, repo_full, payload)
    if event == "push":
        return await checks.handle_push(cfg, engine, launcher, http, repo_full, payload)
    if event not in ("pull_request", "pull_request_review"):
        return {"status": "ignored", "reason": f"event {event!r} is not used by Factory"}
    if not isinstance(pr, dict) or not repo_full:
        raise ValueError("'pull_request' and 'repository.full_name' are required")
    head = _obj(pr.get("head"))
    branch = str(head.get("ref") or "")
    number = pr.get("number")
    why_not = factory_pr(repo_full, {**pr, "head": {**head, "repo": head.get("repo") or {"full_name": ""}}})
    if why_not is not None:
        return {"status": "ignored", "reason": why_not}
    action = payload.get("action")
    if event == "pull_request":
        if action != "closed":
            return {"status": "ignored", "reason": f"pull_request {action}"}
        closed = await record_pr_closed(
            cfg, engine, http, repo_full, number, branch, bool(pr.get("merged")), pr.get("html_url")
        )
        if closed is None:
            return {"status": "ignored", "reason": "no Factory task has this pull request, or it was recorded already"}
        return {"status": "recorded", "pr_state": "merged" if closed.merged else "closed", "task_ids": closed.task_ids}
    review = _obj(payload.get("review"))
    if action != "submitted" or str(review.get("state") or "").lower() != "changes_requested":
        return {"status": "ignored", "reason": "not a review that requests changes"}
    if not may_request_changes(cfg, review):
        return {"status": "ignored", "reason": "the reviewer has no write access to the repository"}
    return await start_revision(cfg, engine, launcher, http, repo_full, pr, review)


def may_request_changes(cfg: FactoryConfig, review: dict[str, Any]) -> bool:
    """Whether the review's author may drive a revision: write access, or listed in `github.allowed_users`."""
    return may_write(cfg, review.get("author_association"), _obj(review.get("user")).get("login"))


def review_context(pr: dict[str, Any], review: dict[str, Any], comments: list[dict[str, Any]]) -> str:
    """The revision prompt's context: the review body and every review comment, word for word."""
    who = (review.get("user") or {}).get("login") or "a reviewer"
    parts = [
        f"## Review: changes requested on pull request #{pr.get('number')} by @{who}",
        f"{pr.get('html_url') or ''}".strip(),
        (review.get("body") or "").strip() or "(no summary text)",
    ]
    if comments:
        parts.append("### Review comments")
        for c in comments:
            where = c.get("path") or "?"
            line = c.get("line") or c.get("original_line")
            parts.append(f"- `{where}{':' + str(line) if line else ''}`: {(c.get('body') or '').strip()}")
    parts.append(
        "Address every point above on this branch; the pull request updates when you push. "
        "End with a short summary of what you changed."
    )
    return "\n\n".join(p for p in parts if p)


async def start_revision(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    http: httpx.AsyncClient,
    repo_full: str,
    pr: dict[str, Any],
    review: dict[str, Any],
) -> dict[str, Any]:
    """Start a coder_revision task on the PR's branch with the review as its context (once per review).

    The review's line comments are remembered with the task, so that its end replies in each thread.
    """
    number = int(pr["number"])
    branch = str(pr["head"]["ref"])
    review_id = review.get("id")
    comments = await GitHubClient(cfg, http).review_comments(repo_full, number, review_id)
    tasks, runs = await asyncio.to_thread(pr_work, cfg, engine, repo_full, number, branch)
    title = runs[0].title if runs else (tasks[0].title if tasks else branch)
    follow = FollowUp(
        title=f"Revise PR #{number}: {title}",
        description=f"Revise pull request #{number} ({pr.get('html_url') or branch}) as the review below asks.",
        context=review_context(pr, review, comments),
        claim_kind="github-review",
        claim_key=str(review_id) if review_id is not None else "",
    )
    out = await start_follow_up(cfg, engine, launcher, repo_full, pr, follow)
    if out.get("status") == "started":
        ids = [int(c["id"]) for c in comments if isinstance(c.get("id"), int)]
        if ids:
            await asyncio.to_thread(set_threads, engine, out["task_id"], repo_full, number, ids)
        log.info("review on %s#%s started revision task #%s", repo_full, number, out["task_id"])
    elif "started already" in str(out.get("reason")):
        out["reason"] = "a revision for this review was started already"
    return out


async def poll_pr_states(cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient) -> None:
    """Without a webhook: ask GitHub once about open Factory PRs (a cluster singleton runs it every
    `github.pr_poll_minutes`: workflows/singletons.py)."""
    await _poll_once(cfg, engine, http, GitHubClient(cfg, http))


def _open_prs(engine: Engine) -> list[Any]:
    rows: list[Any] = []
    with session_scope(engine) as s:
        for table in (Task, WorkflowRun):
            rows += s.exec(
                select(table).where(
                    table.pr_number.is_not(None),
                    table.branch.is_not(None),
                    (table.pr_state.is_(None)) | (table.pr_state == "open"),
                )
            ).all()
    return rows


async def _poll_once(cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient, gh: GitHubClient) -> None:
    rows = await asyncio.to_thread(_open_prs, engine)
    seen: set[tuple[str, int]] = set()
    for t in rows:
        repo_full = _github_of(cfg, t.repo)
        if not repo_full or (repo_full, t.pr_number) in seen or not (t.branch or "").startswith(BRANCH_PREFIX):
            continue
        seen.add((repo_full, t.pr_number))
        state = await gh.pull_request_state(repo_full, t.pr_number)
        if state in ("merged", "closed"):
            await record_pr_closed(cfg, engine, http, repo_full, t.pr_number, t.branch, state == "merged", t.pr_url)
