"""GitHub notifier: what Factory says on GitHub while its work runs.

- An issue Factory works on has one status comment, edited as the work moves on (started, waiting
  for an answer, done with its PR, failed), never posted twice. A question is also posted on the
  issue as a comment of its own (people are notified of new comments, not of edits), and a reply
  there by someone with write access answers it (`mentions`).
- With `github.check_runs`, Factory's state is a check run named "Factory" on the PR's head commit:
  in progress while it works or waits for an answer, then success, failure, neutral (a review that
  did not approve, a budget stop) or cancelled, with a link to the task.
- A revision started by a review replies in each of the review's line-comment threads when it is
  done, saying what it changed.

Each send runs in its own retried activity (`send_notification`); every write is made once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy.engine import Engine

from factory.config import FactoryConfig
from factory.contracts import TaskEvent
from factory.domain.redact import scrub
from factory.domain.text import clip
from factory.integrations.github.client import GitHubClient, GitHubError
from factory.integrations.github.links import (
    MARKER,
    IssueLink,
    check_run_id,
    issue_link,
    issue_of,
    remember_own_comment,
    save_issue_link,
    set_check_run_id,
    threads_of,
)
from factory.integrations.github.prs import github_of
from factory.store.kv import kv_get, kv_set
from factory.store.tables import Task, WorkflowRun, session_scope

log = logging.getLogger("factory.github")

KINDS = frozenset({"started", "completed", "failed", "cancelled", "question", "answered"})
WORKING = ("queued", "in_progress", "pending", "running")  # task and workflow-run statuses before an end
OUTCOME_WAIT_TRIES = 40  # x 0.25 s: how long a send waits for the outcome it reports to be recorded


def work_url(cfg: FactoryConfig, task_id: int | None = None, run_id: int | None = None) -> str | None:
    """The dashboard page of a task or workflow run, when `github.dashboard_url` is set."""
    base = cfg.github.dashboard_url.rstrip("/")
    if not base:
        return None
    return f"{base}/#/tasks/{task_id}" if task_id is not None else f"{base}/#/runs/{run_id}"


def work_name(task_id: int | None, run_id: int | None) -> str:
    return f"task #{task_id}" if task_id is not None else f"workflow run #{run_id}"


def status_text(cfg: FactoryConfig, task_id: int | None, run_id: int | None, state: str, detail: str = "") -> str:
    """The status comment's text: the work, a link to it, where it stands."""
    url = work_url(cfg, task_id, run_id)
    name = f"[{work_name(task_id, run_id)}]({url})" if url else work_name(task_id, run_id)
    parts = [MARKER, f"**Factory** is working on this issue as {name}.", f"**Status:** {state}"]
    if detail.strip():
        parts.append(clip(scrub(detail.strip(), cfg.secret_values()), 3000))
    return "\n\n".join(parts)


async def upsert_status_comment(engine: Engine, gh: GitHubClient, link: IssueLink, body: str) -> None:
    """Edit the issue's status comment, or post it the first time (then remember it)."""
    if link.status_comment_id is not None:
        await gh.edit_comment(link.repo, link.status_comment_id, body)
        return
    comment_id = await gh.add_comment(link.repo, link.number, body)
    await asyncio.to_thread(remember_own_comment, engine, comment_id)
    fresh = await asyncio.to_thread(issue_link, engine, link.repo, link.number)
    fresh.status_comment_id = comment_id
    await asyncio.to_thread(save_issue_link, engine, fresh)


class GitHubNotifier:
    """Status comments on issues, check runs on PRs, replies in review threads (a `Notifier`)."""

    name = "github"

    def __init__(self, cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient):
        self.cfg = cfg
        self.engine = engine
        self.gh = GitHubClient(cfg, http)

    def wants(self, event: TaskEvent) -> bool:
        if event.kind not in KINDS:
            return False
        return self._issue(event) is not None or self._pr(event) is not None or self._threads(event) is not None

    def _issue(self, e: TaskEvent) -> tuple[str, int] | None:
        run_id = e.workflow_run_id
        if e.task_id is not None and run_id is not None:
            return issue_of(self.engine, run_id=run_id)  # a step speaks through its run's issue
        return issue_of(self.engine, task_id=e.task_id, run_id=run_id)

    def _pr(self, e: TaskEvent) -> tuple[str, int] | None:
        if not self.cfg.github.check_runs:
            return None
        with session_scope(self.engine) as s:
            row: Task | WorkflowRun | None = s.get(Task, e.task_id) if e.task_id is not None else None
            if row is not None and row.workflow_run_id is not None:
                row = s.get(WorkflowRun, row.workflow_run_id)
            elif row is None and e.workflow_run_id is not None:
                row = s.get(WorkflowRun, e.workflow_run_id)
        if row is None or row.pr_number is None:
            return None
        repo = github_of(self.cfg, row.repo)
        return (repo, row.pr_number) if repo else None

    def _threads(self, e: TaskEvent) -> tuple[str, int, list[int]] | None:
        if e.kind != "completed" or e.task_id is None:
            return None
        return threads_of(self.engine, e.task_id)

    def _standing(self, e: TaskEvent) -> str | None:
        """The row's status, when the event is about one (a task, else a run)."""
        with session_scope(self.engine) as s:
            if e.task_id is not None:
                task = s.get(Task, e.task_id)
                return task.status if task else None
            run = s.get(WorkflowRun, e.workflow_run_id) if e.workflow_run_id is not None else None
            return run.status if run else None

    async def send(self, event: TaskEvent) -> None:
        standing = await asyncio.to_thread(self._standing, event)
        # the outcome is recorded beside this send, not before it: wait (a bounded while) for it to land
        # before reading what it records (changed files, the PR number)
        for _ in range(OUTCOME_WAIT_TRIES):
            if event.kind not in ("completed", "failed", "cancelled") or standing not in WORKING:
                break
            await asyncio.sleep(0.25)
            standing = await asyncio.to_thread(self._standing, event)
        # a start or an answer overtaken by what happened since (a question, the end) changes nothing
        stale = event.kind in ("started", "answered") and standing not in (None, *WORKING)
        try:
            issue = await asyncio.to_thread(self._issue, event)
            if issue is not None and not stale:
                await self._on_issue(issue, event)
            pr = await asyncio.to_thread(self._pr, event)
            if pr is not None and not stale:
                await self._check_run(pr, event)
            threads = await asyncio.to_thread(self._threads, event)
            if threads is not None:
                await self._reply_in_threads(threads, event)
        except GitHubError as exc:
            raise RuntimeError(str(exc)) from None  # send_notification turns it into a retried failure

    async def _on_issue(self, issue: tuple[str, int], e: TaskEvent) -> None:
        repo, number = issue
        if e.task_id is not None and e.workflow_run_id is not None and e.kind not in ("question", "answered"):
            return  # a step's start or end is not the run's; the run reports its own
        task_id = None if e.workflow_run_id is not None else e.task_id
        state, detail = {
            "started": ("running", ""),
            "answered": ("running (answered)", ""),
            "question": ("waiting for an answer (see the question below)", ""),
            "completed": (
                "done",
                (f"Pull request: {e.pr_url}\n\n" if e.pr_url else "No changes were made.\n\n") + (e.summary or ""),
            ),
            "failed": ("failed", e.error or ""),
            "cancelled": ("cancelled", ""),
        }[e.kind]
        link = await asyncio.to_thread(issue_link, self.engine, repo, number)
        await upsert_status_comment(
            self.engine, self.gh, link, status_text(self.cfg, task_id, e.workflow_run_id, state, detail)
        )
        if e.kind == "question":
            await self._once(
                f"github:sent:question:{e.question_id}:{repo}#{number}",
                lambda: self._question_comment(repo, number, e),
            )

    async def _question_comment(self, repo: str, number: int, e: TaskEvent) -> int:
        question = scrub(e.question or "", self.cfg.secret_values())
        lines = [MARKER, f"**Factory ({work_name(e.task_id, e.workflow_run_id)}) asks:**", question]
        if e.options:
            lines.append("Options:\n" + "\n".join(f"- {o}" for o in e.options))
        lines.append("_Reply with a comment on this issue to answer (people with write access only)._")
        comment_id = await self.gh.add_comment(repo, number, "\n\n".join(lines))
        await asyncio.to_thread(remember_own_comment, self.engine, comment_id)
        return comment_id

    async def _once(self, key: str, write: Callable[[], Awaitable[int]]) -> None:
        """Make a write once: marked after it is made, so a failed one is made by the retry."""
        if await asyncio.to_thread(kv_get, self.engine, key) is not None:
            return
        made = await write()
        await asyncio.to_thread(kv_set, self.engine, key, str(made))

    async def _check_run(self, pr: tuple[str, int], e: TaskEvent) -> None:
        repo, number = pr
        sha = str((await self.gh.pull_request(repo, number)).get("head", {}).get("sha") or "")
        if not sha:
            return
        who = work_name(e.task_id, e.workflow_run_id)
        fields: dict[str, object] = {"name": "Factory", "head_sha": sha}
        url = work_url(self.cfg, e.task_id, e.workflow_run_id if e.task_id is None else None)
        if url:
            fields["details_url"] = url
        if e.kind in ("started", "answered", "question"):
            title = "Waiting for an answer" if e.kind == "question" else f"Factory is working ({who})"
            fields.update(status="in_progress", output={"title": title, "summary": e.question or e.title or who})
        else:
            conclusion, title = {"completed": ("success", "Done"), "failed": ("failure", "Failed"),
                                 "cancelled": ("cancelled", "Cancelled")}[e.kind]  # fmt: skip
            error = e.error or ""
            if e.kind == "failed" and "budget" in error.lower():
                conclusion, title = "neutral", "Stopped by a budget"
            if e.kind == "completed" and e.task_id is None and (e.summary or "") != "the review approved":
                conclusion, title = "neutral", "The review did not approve"
            elif e.kind == "completed" and e.task_id is None:
                title = "The review approved"
            summary = scrub(clip(e.summary or error or who, 3000), self.cfg.secret_values())
            fields.update(status="completed", conclusion=conclusion, output={"title": title, "summary": summary})
        existing = await asyncio.to_thread(check_run_id, self.engine, repo, sha)
        body = fields if existing is None else {k: v for k, v in fields.items() if k != "head_sha"}
        made = await self.gh.check_run(repo, existing, body)
        if existing is None:
            await asyncio.to_thread(set_check_run_id, self.engine, repo, sha, made)
        # the run a push left behind on the commit before it would otherwise stay "in progress"
        mine = f"github:check-of:{e.task_id}:{e.workflow_run_id}"
        before = await asyncio.to_thread(kv_get, self.engine, mine)
        if before and before != f"{sha}:{made}" and fields["status"] == "completed":
            old_id = int(before.partition(":")[2])
            superseded = {"status": "completed", "conclusion": "neutral",
                          "output": {"title": f"Superseded by {sha[:12]}", "summary": f"{who} pushed {sha[:12]}."}}  # fmt: skip
            await self.gh.check_run(repo, old_id, superseded)
        await asyncio.to_thread(kv_set, self.engine, mine, f"{sha}:{made}")

    async def _reply_in_threads(self, threads: tuple[str, int, list[int]], e: TaskEvent) -> None:
        repo, number, comment_ids = threads
        with session_scope(self.engine) as s:
            task = s.get(Task, e.task_id)
            files = list(task.changed_files or []) if task is not None else []
        changed = ", ".join(f"`{f}`" for f in files[:20]) or "no files"
        summary = scrub(clip(e.summary or "", 2000), self.cfg.secret_values())
        body = f"{MARKER}\n\nFactory ({work_name(e.task_id, None)}) addressed this; it changed {changed}.\n\n{summary}"
        for cid in comment_ids:

            async def reply(cid: int = cid) -> int:
                return await self.gh.reply_to_review_comment(repo, number, cid, body.strip())

            await self._once(f"github:sent:reply:{e.task_id}:{cid}", reply)
