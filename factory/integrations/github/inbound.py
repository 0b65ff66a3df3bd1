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
in `github.allowed_users`) starts a revision. Anything else is logged and ignored.
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
from factory.environments.janitor import remove_previews_of_closed_pr
from factory.git.repos import RepoError, resolve_repo
from factory.integrations.claims import claimed, start_or_forget
from factory.integrations.github.client import GitHubClient
from factory.integrations.plane.client import PlaneClient, PlaneError
from factory.launcher import Launcher, NewTask, TaskStart
from factory.store.tables import FINISHED, Task, WorkflowRun, session_scope

log = logging.getLogger("factory.github")

BRANCH_PREFIX = "factory/"
WRITE_ACCESS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})


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


def _tear_down_previews(task_ids: list[int]) -> None:
    task = asyncio.get_running_loop().create_task(remove_previews_of_closed_pr(task_ids))
    _teardowns.add(task)
    task.add_done_callback(_teardowns.discard)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _github_of(cfg: FactoryConfig, repo: str) -> str | None:
    try:
        return resolve_repo(cfg, repo).github
    except RepoError:
        return None


def _tasks_of(engine: Engine, cfg: FactoryConfig, repo_full: str, branch: str) -> list[Task]:
    with session_scope(engine) as s:
        rows = s.exec(select(Task).where(Task.branch == branch).order_by(Task.id)).all()
    return [t for t in rows if (_github_of(cfg, t.repo) or "").lower() == repo_full.lower()]


def _runs_of(engine: Engine, cfg: FactoryConfig, repo_full: str, branch: str, run_ids: set[int]) -> list[WorkflowRun]:
    with session_scope(engine) as s:
        on_branch = s.exec(select(WorkflowRun).where(WorkflowRun.branch == branch)).all()
        ids = run_ids | {r.id for r in on_branch if (_github_of(cfg, r.repo) or "").lower() == repo_full.lower()}
        return [r for r in (s.get(WorkflowRun, i) for i in sorted(ids)) if r is not None]


def _pr_work(
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
    _tear_down_previews(task_ids)
    return event


async def handle_github_event(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    http: httpx.AsyncClient,
    event: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """Act on one verified, de-duplicated GitHub webhook; returns what happened."""
    if event == "ping":
        return {"status": "pong"}
    pr = payload.get("pull_request")
    repo_full = str(_obj(payload.get("repository")).get("full_name") or "")
    if event not in ("pull_request", "pull_request_review"):
        return {"status": "ignored", "reason": f"event {event!r} is not used by Factory"}
    if not isinstance(pr, dict) or not repo_full:
        raise ValueError("'pull_request' and 'repository.full_name' are required")
    head = _obj(pr.get("head"))
    branch = str(head.get("ref") or "")
    number = pr.get("number")
    if not branch.startswith(BRANCH_PREFIX) or not isinstance(number, int):
        return {"status": "ignored", "reason": "not a Factory branch"}
    head_repo = str(_obj(head.get("repo")).get("full_name") or "")
    if head_repo.lower() != repo_full.lower():
        log.warning("ignored %s on %s#%s: its head is %r, not the repository", event, repo_full, number, head_repo)
        return {"status": "ignored", "reason": "the pull request's head is another repository (a fork)"}
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
        who = _obj(review.get("user")).get("login")
        log.warning(
            "ignored a review on %s#%s by %r (%s): no write access",
            repo_full, number, who, review.get("author_association"),
        )  # fmt: skip
        return {"status": "ignored", "reason": "the reviewer has no write access to the repository"}
    return await start_revision(cfg, engine, launcher, http, repo_full, pr, review)


def may_request_changes(cfg: FactoryConfig, review: dict[str, Any]) -> bool:
    """Whether the review's author may drive a revision: write access, or listed in `github.allowed_users`."""
    if str(review.get("author_association") or "").upper() in WRITE_ACCESS:
        return True
    login = str(_obj(review.get("user")).get("login") or "").lower()
    return bool(login) and login in {u.lower() for u in cfg.github.allowed_users}


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
    """Start a coder_revision task on the PR's branch with the review as its context (once per review)."""
    branch = str(pr["head"]["ref"])
    number = int(pr["number"])
    tasks, runs = await asyncio.to_thread(_pr_work, cfg, engine, repo_full, number, branch)
    if not tasks and not runs:
        return {"status": "ignored", "reason": "no Factory task has this pull request"}
    busy = [f"task #{t.id}" for t in tasks if t.status not in FINISHED]
    busy += [f"workflow run #{r.id}" for r in runs if r.status in ("pending", "running")]
    if busy:
        return {"status": "ignored", "reason": f"{busy[-1]} is still working on this branch"}
    review_id = review.get("id")
    async with claimed(engine, "github-review", str(review_id) if review_id is not None else None) as first:
        if not first:
            return {"status": "ignored", "reason": "a revision for this review was started already"}
        run = runs[0] if runs else None
        root_title = run.title if run else tasks[0].title
        parent_id = tasks[-1].id if tasks else None
        issue = (run.plane_issue_id if run else None) or next(
            (t.plane_issue_id for t in tasks if t.plane_issue_id), None
        )
        comments = await GitHubClient(cfg, http).review_comments(repo_full, number, review_id)
        new = NewTask(
            title=f"Revise PR #{number}: {root_title}"[:500],
            description=f"Revise pull request #{number} ({pr.get('html_url') or branch}) as the review below asks.",
            repo=tasks[-1].repo if tasks else run.repo,
            agent_type="coder_revision",
            parent_task_id=parent_id,
            plane_issue_id=issue,
            pr_url=pr.get("html_url"),
            pr_number=number,
            pr_state="open",
        )
        start = TaskStart(branch=branch, context=review_context(pr, review, comments), parent_task_id=parent_id)
        task = await launcher.create_task(new, run=False)
        await start_or_forget(launcher, engine, task, start)  # a failed start leaves no queued row behind
    log.info("review on %s#%s started revision task #%s", repo_full, number, task.id)
    return {"status": "started", "task_id": task.id, "branch": branch}


async def poll_pr_states(cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient) -> None:
    """Without a webhook: every `github.pr_poll_minutes`, ask GitHub about open Factory PRs."""
    gh = GitHubClient(cfg, http)
    interval = max(cfg.github.pr_poll_minutes * 60, 0.2)
    while True:
        await asyncio.sleep(interval)
        try:
            await _poll_once(cfg, engine, http, gh)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("PR state poll failed")


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
