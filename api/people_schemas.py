"""Request bodies and response models of the people, token, sign-in and audit routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.bodies import Body

Role = Literal["admin", "operator", "viewer"]
Scope = Literal["read", "operate", "admin"]
Service = Literal["github", "plane", "telegram", "oidc"]
LOGIN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$"


class UserCreate(BaseModel):  # not Body: its login pattern (no NUL either) must reach the schema as it is
    login: str = Field(pattern=LOGIN, description="letters, digits and . _ @ + - (up to 100)")
    role: Role = "viewer"
    password: str | None = Field(default=None, min_length=12, max_length=200, description="only with auth.local")


class UserUpdate(Body):
    role: Role | None = None
    disabled: bool | None = Field(default=None, description="true: every session and token of theirs stops working")


class TokenCreate(Body):
    scope: Scope = "read"
    days: float | None = Field(default=90, gt=0, le=3650, description="expiry; null: never")
    name: str = Field(default="", max_length=100)


class IdentityCreate(BaseModel):  # not Body: its pattern (printable ASCII, no space) must reach the schema
    service: Service
    external_id: str = Field(min_length=1, max_length=200, pattern=r"^[!-~]+$")


class LocalSignIn(Body):
    login: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=200)


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    login: str
    role: str
    disabled: bool
    created_at: datetime


class IdentityPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    user_id: int
    service: str
    external_id: str


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    user_id: int
    name: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="shown this once; only its hash is kept")


class MePublic(BaseModel):
    actor: str
    role: str
    user_id: int | None
    via: str = Field(description="open (no auth configured), bootstrap, token or cookie")
    csrf: str | None = Field(description="send as X-CSRF-Token on writes made with the session cookie")


class AuthMethods(BaseModel):
    oidc: bool
    github: bool
    local: bool
    token: bool


class AuditPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    task_id: int | None
    outcome: str
    source: str


class AuditPage(BaseModel):
    entries: list[AuditPublic]
    next_cursor: int | None = Field(description="pass as cursor= for the next (older) page; null: no more")
