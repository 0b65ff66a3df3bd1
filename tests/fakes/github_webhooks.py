"""GitHub webhook payloads shaped like GitHub's own (octokit/webhooks `payload-examples/api.github.com`:
`pull_request_review/submitted`, `pull_request/closed`, `issues/labeled`, `issues/opened`,
`issue_comment/created` and `edited`, `check_suite/completed`, `workflow_run/completed` and `push`),
with names, ids and URLs of the test's repository, and the payload's URL lists trimmed to the fields
Factory or a reader needs.
"""

from __future__ import annotations

import itertools
from typing import Any

_ids = itertools.count(21031067)


def user(login: str) -> dict[str, Any]:
    """A `user` / `sender` object."""
    uid = next(_ids)
    return {
        "login": login,
        "id": uid,
        "node_id": f"MDQ6VXNlcj{uid}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "",
        "url": f"https://api.github.com/users/{login}",
        "html_url": f"https://github.com/{login}",
        "type": "User",
        "site_admin": False,
    }


def repository(full_name: str, fork: bool = False) -> dict[str, Any]:
    """A `repository` object (also `head.repo` / `base.repo`)."""
    owner, name = full_name.split("/")
    rid = next(_ids)
    return {
        "id": rid,
        "node_id": f"MDEwOlJlcG9zaXRvcnk{rid}",
        "name": name,
        "full_name": full_name,
        "private": False,
        "owner": user(owner),
        "html_url": f"https://github.com/{full_name}",
        "description": None,
        "fork": fork,
        "url": f"https://api.github.com/repos/{full_name}",
        "pulls_url": f"https://api.github.com/repos/{full_name}/pulls{{/number}}",
        "default_branch": "main",
    }


def pull_request(
    number: int,
    branch: str,
    repo: str = "acme/demo",
    head_repo: str | None = None,
    html_url: str | None = None,
    author: str = "factory-bot",
    state: str = "open",
    merged: bool = False,
) -> dict[str, Any]:
    """A `pull_request` object; `head_repo` names a fork the head branch lives in (default: `repo` itself)."""
    head_repo = head_repo or repo
    head_owner = head_repo.split("/")[0]
    return {
        "url": f"https://api.github.com/repos/{repo}/pulls/{number}",
        "id": next(_ids),
        "node_id": f"MDExOlB1bGxSZXF1ZXN0{number}",
        "html_url": html_url or f"https://github.com/{repo}/pull/{number}",
        "number": number,
        "state": state,
        "locked": False,
        "title": f"Factory: {branch}",
        "user": user(author),
        "body": "",
        "created_at": "2026-05-15T15:20:33Z",
        "updated_at": "2026-05-15T15:20:38Z",
        "closed_at": None if state == "open" else "2026-05-15T16:00:00Z",
        "merged_at": "2026-05-15T16:00:00Z" if merged else None,
        "merge_commit_sha": None,
        "draft": False,
        "head": {
            "label": f"{head_owner}:{branch}",
            "ref": branch,
            "sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
            "user": user(head_owner),
            "repo": repository(head_repo, fork=head_repo != repo),
        },
        "base": {
            "label": f"{repo.split('/')[0]}:main",
            "ref": "main",
            "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
            "user": user(repo.split("/")[0]),
            "repo": repository(repo),
        },
        "author_association": "NONE" if head_repo != repo else "MEMBER",
        "merged": merged,
    }


def from_fake(pr: dict[str, Any], repo: str = "acme/demo", head_repo: str | None = None) -> dict[str, Any]:
    """The `pull_request` object of a PR the GitHub stand-in holds."""
    return pull_request(pr["number"], pr["head"]["ref"], repo, head_repo, pr.get("html_url"))


def review_submitted(
    pr: dict[str, Any],
    review_id: int,
    body: str,
    login: str = "carol",
    association: str = "COLLABORATOR",
    state: str = "changes_requested",
    repo: str = "acme/demo",
) -> dict[str, Any]:
    """A `pull_request_review` `submitted` payload for `pr` (a `pull_request` object)."""
    return {
        "action": "submitted",
        "review": {
            "id": review_id,
            "node_id": f"MDE3OlB1bGxSZXF1ZXN0UmV2aWV3{review_id}",
            "user": user(login),
            "body": body,
            "commit_id": pr["head"]["sha"],
            "submitted_at": "2026-05-15T15:20:38Z",
            "state": state,
            "html_url": f"{pr['html_url']}#pullrequestreview-{review_id}",
            "pull_request_url": pr["url"],
            "author_association": association,
        },
        "pull_request": pr,
        "repository": repository(repo),
        "sender": user(login),
    }


def pr_closed(pr: dict[str, Any], merged: bool, sender: str = "carol", repo: str = "acme/demo") -> dict[str, Any]:
    """A `pull_request` `closed` payload for `pr` (a `pull_request` object)."""
    closed = {**pr, "state": "closed", "merged": merged, "closed_at": "2026-05-15T16:00:00Z"}
    return {
        "action": "closed",
        "number": pr["number"],
        "pull_request": closed,
        "repository": repository(repo),
        "sender": user(sender),
    }


def label(name: str) -> dict[str, Any]:
    """A `label` object."""
    lid = next(_ids)
    return {
        "id": lid,
        "node_id": f"MDU6TGFiZWw{lid}",
        "url": f"https://api.github.com/repos/acme/demo/labels/{name}",
        "name": name,
        "color": "d73a4a",
        "default": False,
        "description": None,
    }


def issue(
    number: int,
    title: str,
    body: str,
    labels: list[str] = (),  # type: ignore[assignment]
    author: str = "carol",
    association: str = "COLLABORATOR",
    repo: str = "acme/demo",
    pull_request: bool = False,
) -> dict[str, Any]:
    """An `issue` object (a PR's issue side when `pull_request`)."""
    out: dict[str, Any] = {
        "url": f"https://api.github.com/repos/{repo}/issues/{number}",
        "repository_url": f"https://api.github.com/repos/{repo}",
        "html_url": f"https://github.com/{repo}/issues/{number}",
        "id": next(_ids),
        "node_id": f"MDU6SXNzdWU{number}",
        "number": number,
        "title": title,
        "user": user(author),
        "labels": [label(n) for n in labels],
        "state": "open",
        "locked": False,
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "comments": 0,
        "created_at": "2026-05-15T15:20:18Z",
        "updated_at": "2026-05-15T15:20:21Z",
        "closed_at": None,
        "author_association": association,
        "active_lock_reason": None,
        "body": body,
    }
    if pull_request:
        out["pull_request"] = {
            "url": f"https://api.github.com/repos/{repo}/pulls/{number}",
            "html_url": f"https://github.com/{repo}/pull/{number}",
        }
    return out


def issue_labeled(
    the_issue: dict[str, Any], name: str, sender: str = "carol", repo: str = "acme/demo"
) -> dict[str, Any]:
    """An `issues` `labeled` payload: `name` was just added (and is among the issue's labels)."""
    added = label(name)
    if name not in [x["name"] for x in the_issue["labels"]]:
        the_issue = {**the_issue, "labels": [*the_issue["labels"], added]}
    return {
        "action": "labeled",
        "issue": the_issue,
        "label": added,
        "repository": repository(repo),
        "sender": user(sender),
    }


def issue_opened(the_issue: dict[str, Any], repo: str = "acme/demo") -> dict[str, Any]:
    """An `issues` `opened` payload."""
    return {"action": "opened", "issue": the_issue, "repository": repository(repo), "sender": the_issue["user"]}


def issue_comment(
    the_issue: dict[str, Any],
    body: str,
    login: str = "carol",
    association: str = "COLLABORATOR",
    comment_id: int | None = None,
    action: str = "created",
    repo: str = "acme/demo",
) -> dict[str, Any]:
    """An `issue_comment` `created` (or `edited`) payload on `the_issue`."""
    cid = comment_id or next(_ids)
    out: dict[str, Any] = {
        "action": action,
        "issue": the_issue,
        "comment": {
            "url": f"https://api.github.com/repos/{repo}/issues/comments/{cid}",
            "html_url": f"{the_issue['html_url']}#issuecomment-{cid}",
            "issue_url": the_issue["url"],
            "id": cid,
            "node_id": f"MDEyOklzc3VlQ29tbWVudD{cid}",
            "user": user(login),
            "created_at": "2026-05-15T15:20:21Z",
            "updated_at": "2026-05-15T15:20:21Z",
            "author_association": association,
            "body": body,
        },
        "repository": repository(repo),
        "sender": user(login),
    }
    if action == "edited":
        out["changes"] = {"body": {"from": "(before the edit)"}}
    return out


def _pr_refs(pr: dict[str, Any], repo: str) -> dict[str, Any]:
    rid = next(_ids)
    ref = {"id": rid, "url": f"https://api.github.com/repos/{repo}", "name": repo.split("/")[1]}
    return {
        "url": f"https://api.github.com/repos/{repo}/pulls/{pr['number']}",
        "id": next(_ids),
        "number": pr["number"],
        "head": {"ref": pr["head"]["ref"], "sha": pr["head"].get("sha", ""), "repo": ref},
        "base": {"ref": pr["base"]["ref"], "sha": pr["base"].get("sha", ""), "repo": ref},
    }


def check_suite_completed(
    pr: dict[str, Any], suite_id: int, head_sha: str, conclusion: str = "failure", repo: str = "acme/demo"
) -> dict[str, Any]:
    """A `check_suite` `completed` payload for a PR the stand-in holds (`pull_requests` as GitHub lists it)."""
    return {
        "action": "completed",
        "check_suite": {
            "id": suite_id,
            "node_id": f"MDEwOkNoZWNrU3VpdGU{suite_id}",
            "head_branch": pr["head"]["ref"],
            "head_sha": head_sha,
            "status": "completed",
            "conclusion": conclusion,
            "url": f"https://api.github.com/repos/{repo}/check-suites/{suite_id}",
            "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
            "after": head_sha,
            "pull_requests": [_pr_refs(pr, repo)],
            "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
            "created_at": "2026-05-15T15:20:31Z",
            "updated_at": "2026-05-15T15:21:14Z",
            "latest_check_runs_count": 1,
            "check_runs_url": f"https://api.github.com/repos/{repo}/check-suites/{suite_id}/check-runs",
            "head_commit": {"id": head_sha, "message": "Factory commit", "timestamp": "2026-05-15T15:20:30Z"},
        },
        "repository": repository(repo),
        "sender": user("github-actions[bot]"),
    }


def workflow_run_completed(
    pr: dict[str, Any], run_id: int, head_sha: str, conclusion: str = "failure", repo: str = "acme/demo"
) -> dict[str, Any]:
    """A `workflow_run` `completed` payload for a PR the stand-in holds."""
    return {
        "action": "completed",
        "workflow_run": {
            "id": run_id,
            "name": "CI",
            "node_id": f"MDExOldvcmtmbG93UnVu{run_id}",
            "head_branch": pr["head"]["ref"],
            "head_sha": head_sha,
            "run_number": 12,
            "event": "pull_request",
            "status": "completed",
            "conclusion": conclusion,
            "workflow_id": 161335,
            "check_suite_id": run_id + 1,
            "url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}",
            "html_url": f"https://github.com/{repo}/actions/runs/{run_id}",
            "pull_requests": [_pr_refs(pr, repo)],
            "jobs_url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}/jobs",
            "logs_url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}/logs",
            "head_repository": {"full_name": repo},
            "repository": {"full_name": repo},
        },
        "workflow": {"id": 161335, "name": "CI", "path": ".github/workflows/ci.yml", "state": "active"},
        "repository": repository(repo),
        "sender": user("github-actions[bot]"),
    }


def push(ref: str, before: str, after: str, pusher: str = "carol", repo: str = "acme/demo") -> dict[str, Any]:
    """A `push` payload."""
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "created": False,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/{repo}/compare/{before[:12]}...{after[:12]}",
        "commits": [],
        "head_commit": {"id": after, "message": "a change on the base"},
        "repository": repository(repo),
        "pusher": {"name": pusher, "email": f"{pusher}@example.com"},
        "sender": user(pusher),
    }


def check_run(run_id: int, name: str, conclusion: str = "failure", repo: str = "acme/demo") -> dict[str, Any]:
    """A check run as `GET /check-suites/{id}/check-runs` lists it (an Actions job: its id is the job's)."""
    return {
        "id": run_id,
        "name": name,
        "status": "completed",
        "conclusion": conclusion,
        "details_url": f"https://github.com/{repo}/actions/runs/1/job/{run_id}",
        "output": {"title": None, "summary": None, "text": None, "annotations_count": 0},
        "app": {"id": 15368, "slug": "github-actions"},
    }
