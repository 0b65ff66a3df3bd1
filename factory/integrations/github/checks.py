"""CI and merge conflicts on Factory PRs bring the agent back, at most `github.ci_fix_rounds` times each.

- A `check_suite` or `workflow_run` that completes with a failure on a Factory PR's current head
  commit starts a fix run on the branch. Its prompt names the failed checks and holds the tails of
  the failing jobs' logs, fetched through the API (a check run of GitHub Actions is a job, so its
  log is the job's). A check suite and a workflow run of the same commit start one run (the
  claim is the commit). After `ci_fix_rounds` rounds, a comment on the PR asks a person to look
  instead. A green run after a fix is recorded in the last task's log.
- A `push` to a branch that Factory PRs merge into makes GitHub recompute their mergeability; a PR
  that no longer merges starts a run that merges the base into the branch and resolves the
  conflicts (its own round count, same cap). GitHub computes mergeability in the background, so
  an unknown answer is asked again a few times before giving up until the next push.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from factory.config import FactoryConfig
from factory.domain.redact import scrub
from factory.domain.text import tail
from factory.integrations.github.client import GitHubClient
from factory.integrations.github.links import MARKER, remember_own_comment, rounds, set_rounds
from factory.integrations.github.prs import (
    BRANCH_PREFIX,
    FollowUp,
    factory_pr,
    obj,
    pr_work,
    root_title,
    start_follow_up,
)
from factory.launcher import Launcher
from factory.store.kv import kv_get, kv_set
from factory.store.tables import FINISHED
from factory.store.writes import add_log

log = logging.getLogger("factory.github")

FAILED = frozenset({"failure", "timed_out", "startup_failure"})
LOG_LINES = 80
LOG_CHARS = 6000
MERGEABLE_RECHECKS_S = (2, 4, 8, 16)

_rechecks: set[asyncio.Task[None]] = set()  # keeps background mergeability checks referenced until done


async def handle_ci_event(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    http: httpx.AsyncClient,
    event: str,
    repo_full: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """`check_suite` / `workflow_run` completed on a Factory PR's head: a fix run, a comment, or a record."""
    run = obj(payload.get(event))
    if payload.get("action") != "completed":
        return {"status": "ignored", "reason": f"{event} {payload.get('action')}"}
    if not isinstance(run.get("id"), int):
        raise ValueError(f"'{event}.id' is required")
    branch, sha = str(run.get("head_branch") or ""), str(run.get("head_sha") or "")
    numbers = [p.get("number") for p in run.get("pull_requests") or [] if isinstance(obj(p).get("number"), int)]
    if not branch.startswith(BRANCH_PREFIX) or not numbers:
        return {"status": "ignored", "reason": "not on a Factory pull request"}
    gh = GitHubClient(cfg, http)
    pr = await gh.pull_request(repo_full, numbers[0])
    why_not = factory_pr(repo_full, pr)
    if why_not is not None:
        return {"status": "ignored", "reason": why_not}
    if str(obj(pr.get("head")).get("sha") or "") != sha:
        return {"status": "ignored", "reason": "not the pull request's head commit (a newer push supersedes it)"}
    number = int(pr["number"])
    tasks, runs = await asyncio.to_thread(pr_work, cfg, engine, repo_full, number, branch)
    if not tasks and not runs:
        return {"status": "ignored", "reason": "no Factory task has this pull request"}
    conclusion = str(run.get("conclusion") or "")
    done = await asyncio.to_thread(rounds, engine, "ci", repo_full, number)
    if conclusion == "success":
        if done and tasks and await asyncio.to_thread(_first, engine, f"github:ci-green:{repo_full}#{number}:{sha}"):
            note = f"CI passed on {sha[:12]} after {done} fix round(s) ({event} {run.get('name') or run['id']})"
            await asyncio.to_thread(add_log, engine, tasks[-1].id, "github", note)
            return {"status": "recorded", "green_after_rounds": done}
        return {"status": "ignored", "reason": "a green run"}
    if conclusion not in FAILED:
        return {"status": "ignored", "reason": f"conclusion {conclusion or 'none'}"}
    commit_key = f"github:ci-fix:{repo_full.lower()}#{number}:{sha}"
    if await asyncio.to_thread(kv_get, engine, commit_key) is not None:
        return {"status": "ignored", "reason": "a fix run for this commit was started already"}
    busy = [f"task #{t.id}" for t in tasks if t.status not in FINISHED]
    if busy:  # its push will bring a new head commit and new checks
        return {"status": "ignored", "reason": f"{busy[-1]} is still working on this branch"}
    if done >= cfg.github.ci_fix_rounds:
        return await _ask_a_person(engine, gh, repo_full, number, "ci", sha, done)
    failures = await _failures(gh, event, repo_full, run, cfg.secret_values())
    title = await asyncio.to_thread(root_title, engine, cfg, repo_full, number, branch)
    follow = FollowUp(
        title=f"Fix CI of PR #{number} (round {done + 1}): {title}",
        description=f"CI failed on pull request #{number} ({pr.get('html_url') or branch}); make it pass.",
        context=ci_context(number, sha, failures, done + 1, cfg.github.ci_fix_rounds),
        claim_kind="github-ci",
        claim_key=f"{repo_full.lower()}#{number}:{sha}",
    )
    out = await start_follow_up(cfg, engine, launcher, repo_full, pr, follow)
    if out.get("status") == "started":
        await asyncio.to_thread(set_rounds, engine, "ci", repo_full, number, done + 1)
        await asyncio.to_thread(kv_set, engine, commit_key, str(out["task_id"]))
        out["round"] = done + 1
    return out


def _first(engine: Engine, key: str) -> bool:
    if kv_get(engine, key) is not None:
        return False
    kv_set(engine, key, "1")
    return True


async def _failures(
    gh: GitHubClient, event: str, repo_full: str, run: dict[str, Any], secrets: list[str]
) -> list[tuple[str, str]]:
    """(name, log tail) of each failed check or job."""
    if event == "check_suite":
        items = [c for c in await gh.suite_check_runs(repo_full, run["id"]) if c.get("conclusion") in FAILED]
    else:
        items = [j for j in await gh.workflow_run_jobs(repo_full, run["id"]) if j.get("conclusion") in FAILED]
    out = []
    for item in items:
        text = await gh.job_log(repo_full, int(item["id"])) if isinstance(item.get("id"), int) else None
        if text is None:  # not an Actions job: what the check itself reported
            output = obj(item.get("output"))
            text = "\n".join(str(output.get(k) or "") for k in ("title", "summary", "text")).strip()
        name = str(item.get("name") or item.get("id"))
        failed_steps = [s.get("name") for s in item.get("steps") or [] if obj(s).get("conclusion") in FAILED]
        if failed_steps:
            name += f" (failed step: {', '.join(str(s) for s in failed_steps)})"
        out.append((name, scrub(tail(text, LOG_LINES, LOG_CHARS), secrets)))
    return out


def ci_context(number: int, sha: str, failures: list[tuple[str, str]], round_no: int, cap: int) -> str:
    """The fix run's prompt context: the failed checks and their log tails."""
    parts = [f"## CI failed on pull request #{number} (commit {sha[:12]}); fix round {round_no} of {cap}"]
    if not failures:
        parts.append("GitHub reported the failure but no failed check could be read; run the project's checks.")
    for name, text in failures:
        parts.append(f"### Failed check: {name}\nThe end of its log:\n```\n{text}\n```")
    parts.append(
        "Find the cause, fix it on this branch, run what checks you can, and commit; the pull request "
        "updates when you push. End with a short summary of the cause and the fix."
    )
    return "\n\n".join(parts)


async def _ask_a_person(
    engine: Engine, gh: GitHubClient, repo_full: str, number: int, kind: str, key: str, done: int
) -> dict[str, Any]:
    what = "CI still fails" if kind == "ci" else "the branch still conflicts with its base"
    said = f"github:gave-up:{kind}:{repo_full.lower()}#{number}:{key}"
    if await asyncio.to_thread(kv_get, engine, said) is None:  # marked once posted: a failed post is retried
        body = (
            f"{MARKER}\n\n**Factory:** {what} after {done} automatic fix round(s), the most it tries "
            "(`github.ci_fix_rounds`). Could a person take a look?"
        )
        comment_id = await gh.add_comment(repo_full, number, body)
        await asyncio.to_thread(remember_own_comment, engine, comment_id)
        await asyncio.to_thread(kv_set, engine, said, str(comment_id))
    return {"status": "asked_a_person", "rounds": done}


async def handle_push(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    http: httpx.AsyncClient,
    repo_full: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """`push` to a base branch: Factory PRs into it that no longer merge get a merge run."""
    ref = str(payload.get("ref") or "")
    if not ref.startswith("refs/heads/") or payload.get("deleted"):
        return {"status": "ignored", "reason": "not a branch update"}
    base = ref.removeprefix("refs/heads/")
    if base.startswith(BRANCH_PREFIX):
        return {"status": "ignored", "reason": "a push to a Factory branch"}
    gh = GitHubClient(cfg, http)
    results = []
    for pr in await gh.open_pulls(repo_full, base):
        if factory_pr(repo_full, pr) is None:
            results.append(await check_mergeable(cfg, engine, launcher, gh, repo_full, int(pr["number"])))
    started = [r["task_id"] for r in results if r.get("status") == "started"]
    return {"status": "started" if started else "checked", "task_ids": started, "pull_requests": len(results)}


async def check_mergeable(
    cfg: FactoryConfig,
    engine: Engine,
    launcher: Launcher,
    gh: GitHubClient,
    repo_full: str,
    number: int,
    attempt: int = 0,
) -> dict[str, Any]:
    """Start a merge run when the PR no longer merges; ask again later while GitHub has not decided."""
    pr = await gh.pull_request(repo_full, number)
    if pr.get("state") != "open":
        return {"status": "ignored", "reason": "closed"}
    if pr.get("mergeable") is None:
        if attempt < len(MERGEABLE_RECHECKS_S):
            _recheck(cfg, engine, launcher, gh, repo_full, number, attempt)
        return {"status": "pending", "reason": "GitHub has not computed mergeability yet"}
    if pr["mergeable"] or str(pr.get("mergeable_state") or "dirty") != "dirty":
        return {"status": "ignored", "reason": "merges cleanly"}
    branch = str(obj(pr.get("head")).get("ref"))
    base = obj(pr.get("base"))
    base_ref, base_sha = str(base.get("ref") or "main"), str(base.get("sha") or "")
    done = await asyncio.to_thread(rounds, engine, "conflict", repo_full, number)
    if done >= cfg.github.ci_fix_rounds:
        return await _ask_a_person(engine, gh, repo_full, number, "conflict", base_sha, done)
    title = await asyncio.to_thread(root_title, engine, cfg, repo_full, number, branch)
    follow = FollowUp(
        title=f"Merge {base_ref} into PR #{number} (round {done + 1}): {title}",
        description=f"Pull request #{number} ({pr.get('html_url') or branch}) conflicts with {base_ref}.",
        context=(
            f"## The base branch `{base_ref}` moved, and this branch no longer merges into it\n\n"
            f"Merge it into this branch: `git merge origin/{base_ref}`. Resolve every conflict so both sides' "
            "intent survives, run what checks you can, and commit the merge (`git commit --no-edit`). Do not "
            "rebase: the branch is pushed. End with a short summary of how you resolved each conflict."
        ),
        claim_kind="github-conflict",
        claim_key=f"{repo_full.lower()}#{number}:{base_sha}",
    )
    out = await start_follow_up(cfg, engine, launcher, repo_full, pr, follow)
    if out.get("status") == "started":
        await asyncio.to_thread(set_rounds, engine, "conflict", repo_full, number, done + 1)
    return out


def _recheck(
    cfg: FactoryConfig, engine: Engine, launcher: Launcher, gh: GitHubClient, repo_full: str, number: int, attempt: int
) -> None:
    async def later() -> None:
        await asyncio.sleep(MERGEABLE_RECHECKS_S[attempt])
        try:
            await check_mergeable(cfg, engine, launcher, gh, repo_full, number, attempt + 1)
        except Exception:  # a background check has no one to report to but the log
            log.exception("mergeability check of %s#%s failed", repo_full, number)

    task = asyncio.get_running_loop().create_task(later())
    _rechecks.add(task)
    task.add_done_callback(_rechecks.discard)
