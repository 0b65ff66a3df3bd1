"""People and the audit log: users, their linked identities, sign-in sessions, API tokens, audit entries.

Secrets are never stored: a session id and an API token are kept only as their sha256 (both are
high-entropy random strings, so a plain hash is enough); a local password as its scrypt hash.
The audit table is append-only by construction: `factory.store.audit` has no update or delete,
and only retention (`auth.audit_retention_days`) removes old rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from factory.store.tables import utcnow


class User(SQLModel, table=True):
    """A person who signs in or holds tokens; `role` is admin, operator or viewer."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    login: str = Field(unique=True, index=True)
    role: str = "viewer"
    password_hash: str | None = None  # scrypt, only with auth.local
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Identity(SQLModel, table=True):
    """A GitHub login, Plane member id, Telegram chat id or OIDC subject that is this user."""

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("service", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(index=True)
    service: str
    external_id: str
    created_at: datetime = Field(default_factory=utcnow)


class AuthSession(SQLModel, table=True):
    """A signed-in browser: the cookie holds the id, the row its sha256 and the CSRF token."""

    __tablename__ = "auth_sessions"

    id: int | None = Field(default=None, primary_key=True)
    id_hash: str = Field(unique=True, index=True)
    user_id: int = Field(index=True)
    csrf: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None


class ApiToken(SQLModel, table=True):
    """A person's bearer token: `fct_<prefix>_<secret>`; the prefix finds the row, the sha256 proves it."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(index=True)
    prefix: str = Field(unique=True, index=True)
    token_hash: str
    name: str = ""
    scope: str = "read"  # read, operate or admin; never above the user's role when used
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class AuditEntry(SQLModel, table=True):
    """One action: who (`actor`), what (`action`), on what (`target`), when, how it ended, from where."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(index=True)
    action: str = Field(index=True)
    target: str = ""
    task_id: int | None = Field(default=None, index=True)
    outcome: str = "ok"  # ok, denied or error
    source: str = ""  # an ip address, or the service an event came from
