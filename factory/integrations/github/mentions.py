"""Issue comments: `@factory <instruction>` mentions, and answers to a question Factory asked on an issue.

Only comments by people with write access (`author_association` OWNER, MEMBER or COLLABORATOR, or a
login in `github.allowed_users`) count; anyone else's comment does nothing. Factory's own comments
are never read.

- A mention (the handle is `github.mention_handle`) on an issue starts a task with the instruction
  and the issue as its context; on a Factory PR it starts a follow-up run on the PR's branch.
  A comment edited to hold a new instruction counts once more; a redelivery does not.
- A new comment on an issue whose task waits for an answer is the answer, with or without a
  leading mention (the mention is taken off); only then can a comment start no new work.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from factory.config import FactoryConfig
from factory.integrations.claims import claimed
from factory.integrations.github.client import GitHubClient, GitHubError
from factory.integrations.github.issues import start_issue_work
from factory.integrations.github.links import is_own_comment, issue_link
from factory.integrations.github.prs import FollowUp, factory_pr, may_write, obj, start_follow_up
from factory.launcher import AnswerRefused, Launcher
from factory.store import audit
from factory.store.tables import Question, Task, session_scope
from factory.store.views import first_waiting

log = logging.getLogger("factory.github")


def instruction_of(handle: str, text: str) -> str | None:
    """The instruction after `@handle` in a comment (the rest of the comment), or None without a mention."""
    m = re.search(rf"(?<![\w@/.-])@{re.escape(handle)}(?![\w-])[:,]?\s*(.*)", text, re.IGNORECASE | re.DOTALL)
    return m.group(1).strip() if m else None


def _waiting_question(engine: Engine, repo_full: str, number: int) -> tuple[Task, Question] | None:
    link = issue_link(engine, repo_full, number)
    with session_scope(engine) as s:
        cond = Task.id.in_(link.task_ids or [-1])
        if link.run_ids:
            cond = cond | Task.workflow_run_id.in_(link.run_ids)
        return first_waiting(s, cond)


async def handle_comment(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    http: httpx.AsyncClient,
    repo_full: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """`issue_comment` created or edited: a mention starts work, a reply answers a waiting question."""
    action = payload.get("action")
    comment, issue = obj(payload.get("comment")), obj(payload.get("issue"))
    if not isinstance(comment.get("id"), int) or not isinstance(issue.get("number"), int):
        raise ValueError("'comment.id' and 'issue.number' are required")
    if action not in ("created", "edited"):
        return {"status": "ignored", "reason": f"issue_comment {action}"}
    body = str(comment.get("body") or "")
    if await asyncio.to_thread(is_own_comment, engine, comment["id"], body):
        return {"status": "ignored", "reason": "Factory's own comment"}
    login = obj(comment.get("user")).get("login")
    if not may_write(cfg, comment.get("author_association"), login):
        return {"status": "ignored", "reason": "the comment's author has no write access to the repository"}
    instruction = instruction_of(cfg.github.mention_handle, body)
    # a task of this issue waiting for an answer takes a writer's new comment as it, with or without
    # `@factory` (a reply that begins with the handle is an answer, not a new instruction)
    found = None
    if action == "created":
        found = await asyncio.to_thread(_waiting_question, engine, repo_full, issue["number"])
    if found is not None:
        answer = body.strip() if not instruction else instruction
        return await _answer(engine, launcher, comment, login, answer, *found)
    if instruction is not None:
        if not instruction:
            return {"status": "ignored", "reason": "a mention without an instruction"}
        key = f"{comment['id']}:{hashlib.sha256(instruction.encode()).hexdigest()[:16]}"
        if issue.get("pull_request"):
            return await _on_pull_request(cfg, engine, launcher, http, repo_full, issue, instruction, login, key)
        async with claimed(engine, "github-mention", key) as first:
            if not first:
                return {"status": "ignored", "reason": "this mention started work already"}
            return await start_issue_work(
                cfg, engine, launcher, http, repo_full, issue, instruction, actor=f"github:{login}"
            )
    if action != "created":
        return {"status": "ignored", "reason": "an edited comment without a mention"}
    return {"status": "ignored", "reason": "no mention, and no task of this issue is waiting for an answer"}


async def _answer(
    engine: Engine, launcher: Launcher, comment: dict[str, Any], login: Any, answer: str, task: Task, question: Question
) -> dict[str, Any]:
    async with claimed(engine, "github-comment", str(comment["id"])) as first:
        if not first:
            return {"status": "ignored", "reason": "this comment was already taken as an answer"}
        try:
            await launcher.deliver_answer(task.id, answer, f"github:{login}", question.id)
        except AnswerRefused as exc:
            return {"status": "ignored", "reason": f"not taken as an answer: {exc}"}
    await audit.arecord(engine, f"github:{login}", "task.answer", f"task:{task.id}", source="github", task_id=task.id)
    log.info("GitHub comment %s answered question #%s of task #%s", comment["id"], question.id, task.id)
    return {"status": "answered", "task_id": task.id, "question_id": question.id}


async def _on_pull_request(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    http: httpx.AsyncClient,
    repo_full: str,
    issue: dict[str, Any],
    instruction: str,
    login: Any,
    key: str,
) -> dict[str, Any]:
    number = int(issue["number"])
    try:
        pr = await GitHubClient(cfg, http).pull_request(repo_full, number)
    except GitHubError as exc:
        if exc.status == 404:
            return {"status": "ignored", "reason": "no such pull request"}
        raise
    why_not = factory_pr(repo_full, pr)
    if why_not is not None:
        return {"status": "ignored", "reason": why_not}
    follow = FollowUp(
        title=f"PR #{number}: {instruction.splitlines()[0]}",
        description=f"An instruction from @{login} on pull request #{number} ({pr.get('html_url') or ''}).",
        context=(
            f"## Instruction from @{login} on pull request #{number}\n\n{instruction}\n\n"
            "Do this on this branch; the pull request updates when you push. End with a short summary."
        ),
        claim_kind="github-mention",
        claim_key=key,
    )
    started = await start_follow_up(cfg, engine, launcher, repo_full, pr, follow)
    task_id = started.get("task_id") if isinstance(started, dict) else None
    if isinstance(task_id, int):
        await audit.arecord(
            engine, f"github:{login}", "task.follow_up", f"task:{task_id}", source="github", task_id=task_id
        )
    return started
