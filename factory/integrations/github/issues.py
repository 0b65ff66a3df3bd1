"""GitHub issues that start work: an issue labelled `github.trigger_label` (default `factory`).

Only the `labeled` action with the trigger label counts, and `opened` with the label already on
it, and only when both the issue's author and the event's sender (the labeller) have write,
maintain or admin access, asked of GitHub's collaborator permission endpoint (an issue template
puts labels on anyone's issue, and the issue's text drives the agent). `agent:<type>` and `workflow:<name>`
labels choose what runs, as Plane's labels do. The task's description is the issue's text and
ends with `Fixes #N`, so its PR closes the issue when merged. A status comment is posted at once
and edited as the work moves on (`notifier`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from factory.config import FactoryConfig
from factory.config_sections import AGENT_TYPES
from factory.integrations.claims import start_or_forget
from factory.integrations.github.client import GitHubClient, GitHubError
from factory.integrations.github.links import issue_link, link_work
from factory.integrations.github.notifier import status_text, upsert_status_comment
from factory.integrations.github.prs import obj, repo_for
from factory.launcher import Launcher, LaunchError, NewTask, TaskStart
from factory.store import audit
from factory.store.tables import FINISHED, Task, WorkflowRun, session_scope

log = logging.getLogger("factory.github")


def label_names(issue: dict[str, Any]) -> list[str]:
    """The names of an issue's labels."""
    return [str(obj(x).get("name") or "") for x in issue.get("labels") or [] if obj(x).get("name")]


def issue_description(issue: dict[str, Any], instruction: str = "") -> str:
    """A task's description for an issue: the instruction, the issue's text, and `Fixes #N` for its PR."""
    parts = []
    if instruction.strip():
        parts.append(instruction.strip())
    parts.append(f"GitHub issue #{issue.get('number')}: {issue.get('title') or ''}".strip())
    if str(issue.get("body") or "").strip():
        parts.append(str(issue["body"]).strip())
    parts.append(f"Fixes #{issue.get('number')}")
    return "\n\n".join(parts)


def _active(engine: Engine, repo_full: str, number: int) -> str | None:
    link = issue_link(engine, repo_full, number)
    with session_scope(engine) as s:
        for tid in link.task_ids:
            t = s.get(Task, tid)
            if t is not None and t.status not in FINISHED:
                return f"task #{tid}"
        for rid in link.run_ids:
            r = s.get(WorkflowRun, rid)
            if r is not None and r.status in ("pending", "running"):
                return f"workflow run #{rid}"
    return None


async def handle_issue_event(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    http: httpx.AsyncClient,
    repo_full: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """`issues` events: start a task (or a configured workflow) for an issue given the trigger label."""
    issue = obj(payload.get("issue"))
    action = payload.get("action")
    trigger = cfg.github.trigger_label.lower()
    if not isinstance(issue.get("number"), int):
        raise ValueError("'issue.number' is required")
    if issue.get("pull_request"):
        return {"status": "ignored", "reason": "a pull request, not an issue"}
    if action == "labeled":
        if str(obj(payload.get("label")).get("name") or "").lower() != trigger:
            return {"status": "ignored", "reason": f"not the {cfg.github.trigger_label!r} label"}
    elif action == "opened":
        if trigger not in [n.lower() for n in label_names(issue)]:
            return {"status": "ignored", "reason": f"no {cfg.github.trigger_label!r} label"}
    else:
        return {"status": "ignored", "reason": f"issues {action}"}
    if repo_for(cfg, repo_full) is None:
        return {"status": "ignored", "reason": f"{repo_full} is not a configured repository"}
    # An issue template labels a stranger's issue (the labeller is the stranger), and a writer may
    # label a stranger's issue whose text then drives the agent: both must have write access.
    for role, who in (("issue's author", obj(issue.get("user")).get("login")), ("labeller", _sender(payload))):
        if not await _may_write(cfg, http, repo_full, who):
            return {"status": "ignored", "reason": f"the {role} ({who!r}) has no write access to the repository"}
    return await start_issue_work(cfg, engine, launcher, http, repo_full, issue, actor=f"github:{_sender(payload)}")


def _sender(payload: dict[str, Any]) -> str:
    return str(obj(payload.get("sender")).get("login") or "")


async def _may_write(cfg: FactoryConfig, http: httpx.AsyncClient, repo_full: str, login: Any) -> bool:
    """Write, maintain or admin on the repository (asked of GitHub, not read from the payload), or a login
    in `github.allowed_users`. Trusted: only GitHub's answer for this login; the payload names the login."""
    name = str(login or "")
    if not name:
        return False
    if name.lower() in {u.lower() for u in cfg.github.allowed_users}:
        return True
    return await GitHubClient(cfg, http).has_write_access(repo_full, name)


async def start_issue_work(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    http: httpx.AsyncClient,
    repo_full: str,
    issue: dict[str, Any],
    instruction: str = "",
    actor: str = "github:unknown",  # who labelled or mentioned, for the audit log
) -> dict[str, Any]:
    """Start a task or workflow run for the issue, link it, and post the status comment."""
    number = int(issue["number"])
    repo = repo_for(cfg, repo_full)
    if repo is None:
        return {"status": "ignored", "reason": f"{repo_full} is not a configured repository"}
    busy = await asyncio.to_thread(_active, engine, repo_full, number)
    if busy:
        return {"status": "ignored", "reason": f"{busy} is still working on this issue"}
    labels = label_names(issue)
    title = str(issue.get("title") or "").strip()[:500] or f"GitHub issue #{number}"
    description = issue_description(issue, instruction)
    workflow = next((n.split(":", 1)[1].strip() for n in labels if n.lower().startswith("workflow:")), "")
    agent = next((n.split(":", 1)[1].strip() for n in labels if n.lower().startswith("agent:")), "")
    if agent and agent not in AGENT_TYPES:
        return {"status": "ignored", "reason": f"unknown agent type {agent!r} in the issue's labels"}
    gh = GitHubClient(cfg, http)
    try:
        if workflow:
            run = await launcher.start_workflow_run(workflow, title, description, repo)
            await asyncio.to_thread(link_work, engine, repo_full, number, None, run.id)
            await _first_status(engine, gh, repo_full, number, status_text(cfg, None, run.id, "queued"))
            return {"status": "started", "workflow": workflow, "workflow_run_id": run.id, "issue": number}
        new = NewTask(title=title, description=description, repo=repo, agent_type=agent or None)
        task = await launcher.create_task(new, run=False)
    except LaunchError as exc:
        return {"status": "ignored", "reason": str(exc)}
    await asyncio.to_thread(link_work, engine, repo_full, number, task.id)
    await audit.arecord(engine, actor, "task.create", f"task:{task.id}", source="github", task_id=task.id)
    # the status comment exists before the task starts, so its events edit it instead of posting a second
    await _first_status(engine, gh, repo_full, number, status_text(cfg, task.id, None, "queued"))
    await start_or_forget(launcher, engine, task, TaskStart())
    log.info("GitHub issue %s#%s started task #%s", repo_full, number, task.id)
    return {"status": "started", "task_id": task.id, "issue": number, "agent_type": task.agent_type}


async def _first_status(engine: Engine, gh: GitHubClient, repo_full: str, number: int, text: str) -> None:
    """Post the status comment; a GitHub outage must not stop the task (its first event posts it instead)."""
    try:
        await upsert_status_comment(engine, gh, await asyncio.to_thread(issue_link, engine, repo_full, number), text)
    except GitHubError as exc:
        log.warning("could not comment on %s#%s: %s", repo_full, number, exc)
