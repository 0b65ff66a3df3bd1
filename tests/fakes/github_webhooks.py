"""GitHub webhook payloads shaped like GitHub's own (octokit/webhooks `payload-examples/api.github.com`:
`pull_request_review/submitted` and `pull_request/closed`), with names, ids and URLs of the test's
repository, and the payload's URL lists trimmed to the fields Factory or a reader needs.
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
