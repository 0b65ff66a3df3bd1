"""Roles and the one rule that says which role a request needs and which audit action it is.

The API applies `rule_for` to every request to /api before routing (api/middleware.py), so a new
route cannot forget it: a write nobody listed here needs admin, and tests/test_auth.py fails on any
route of the app that only the fallback covers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROLES = ("viewer", "operator", "admin")
"""Lowest to highest: viewer reads; operator starts, answers, cancels, retries, hands off, raises budgets;
admin also manages people, other people's tokens and settings."""

SCOPES = {"read": "viewer", "operate": "operator", "admin": "admin"}
"""A token's scope and the highest role it can act as (never above its owner's role)."""

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def rank(role: str) -> int:
    """The role's place among ROLES (-1: not a role)."""
    return ROLES.index(role) if role in ROLES else -1


def lower(a: str, b: str) -> str:
    """The lower of two roles."""
    return a if rank(a) <= rank(b) else b


@dataclass(frozen=True)
class Rule:
    role: str  # "public": no sign-in needed (pages, sign-in, webhooks that check their own signatures)
    action: str  # the audit action of a write ("" for reads)
    listed: bool = True  # False: only the fallback matched (a route nobody gave a rule)


_ID = r"[^/]+"
# (method or "*", path pattern, role, audit action); the first match wins
_RULES: list[tuple[str, str, str, str]] = [
    ("*", r"/webhooks/.*", "public", ""),  # each webhook checks its own signature (api/routes/webhooks.py)
    ("*", r"/auth/.*", "public", "auth.signin"),  # sign-in pages and callbacks (api/routes/auth.py)
    ("POST", r"/api/auth/signout", "viewer", "auth.signout"),
    ("GET", r"/api/users(/.*)?", "admin", ""),
    ("POST", r"/api/users", "admin", "user.create"),
    ("POST", rf"/api/users/{_ID}/tokens", "admin", "token.create"),
    ("POST", rf"/api/users/{_ID}/identities", "admin", "identity.link"),
    ("PATCH", rf"/api/users/{_ID}", "admin", "user.update"),
    ("POST", r"/api/me/tokens", "viewer", "token.create"),  # one's own token, capped by one's role
    ("DELETE", rf"/api/tokens/{_ID}", "viewer", "token.revoke"),  # the route allows only the owner or an admin
    ("POST", r"/api/tasks", "operator", "task.create"),
    ("POST", rf"/api/tasks/{_ID}/run", "operator", "task.run"),
    ("POST", rf"/api/tasks/{_ID}/answer", "operator", "task.answer"),
    ("POST", rf"/api/tasks/{_ID}/cancel", "operator", "task.cancel"),
    ("POST", rf"/api/tasks/{_ID}/retry", "operator", "task.retry"),
    ("POST", rf"/api/tasks/{_ID}/follow-up", "operator", "task.follow_up"),
    ("*", rf"/api/tasks/{_ID}/budget.*", "operator", "budget.raise"),
    ("*", r"/api/budgets(/.*)?", "operator", "budget.raise"),
    ("POST", r"/api/handoffs", "operator", "task.handoff"),
    ("POST", r"/api/workflows(/[a-z_]+)?", "operator", "workflow.create"),
    ("POST", rf"/api/workflows/{_ID}/cancel", "operator", "workflow.cancel"),
    ("POST", r"/api/messages", "operator", "message.create"),
    ("*", r"/api/memory(/.*)?", "operator", "memory.write"),
    ("*", r"/api/environments(/.*)?", "operator", "environment.remove"),
    ("*", r"/api/schedules(/.*)?", "operator", "schedule.change"),
    ("*", r"/api/settings(/.*)?", "admin", "settings.change"),
]
_COMPILED = [(m, re.compile(p), role, action) for m, p, role, action in _RULES]


def rule_for(method: str, path: str) -> Rule:
    """The role `method path` needs and its audit action; reads of /api need viewer, unlisted writes admin."""
    method = "GET" if method == "HEAD" else method
    for m, pattern, role, action in _COMPILED:
        if (m == "*" or m == method) and pattern.fullmatch(path):
            if method not in WRITES and m == "*" and role != "public":
                return Rule("viewer", "")  # a read under a write rule: reading is viewing
            return Rule(role, action if method in WRITES else "")
    if not path.startswith("/api") and path != "/api":
        return Rule("public", "")  # the pages, /health, /docs hold no data
    if method not in WRITES:
        return Rule("viewer", "")
    return Rule("admin", f"write {path}"[:80], listed=False)


def target_of(path: str) -> tuple[str, int | None]:
    """What a write acts on, from its path (`task:12`, `user:3`, ...) and the task id when it is one."""
    m = re.match(r"/api/(tasks|users|tokens|workflows|schedules|memory|environments)/([^/]+)", path)
    if not m:
        return "", None
    kind = {"tasks": "task", "users": "user", "tokens": "token", "workflows": "workflow"}.get(m[1], m[1])
    # a number past a row id's 64 bits is the route's 422, never a task id to store
    task_id = int(m[2]) if m[1] == "tasks" and m[2].isdigit() and len(m[2]) < 19 else None
    return f"{kind}:{m[2][:80]}", task_id
