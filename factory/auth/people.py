"""Users, their linked identities, sign-in sessions and API tokens: the rows behind every principal.

What is trusted: only what this module finds in the database by the sha256 of a presented secret
(a session cookie, a bearer token) or what an identity provider's verified answer names. A login
that already belongs to someone is never taken over by a sign-in: only an identity an admin linked
(or that sign-in created) leads to an existing user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from factory.auth.roles import ROLES, SCOPES, lower, rank
from factory.auth.secrets import check_password, digest, hash_password, new_secret, same
from factory.config_sections import AuthConfig
from factory.store.people import ApiToken, AuthSession, Identity, User
from factory.store.tables import utcnow

TOKEN_PREFIX = "fct_"
PREFIX_BYTES = 6
PREFIX_CHARS = 8
"""A token's row prefix: 6 random bytes, 8 url-safe characters (any of them may be "_")."""
SERVICES = ("github", "plane", "telegram", "oidc")


class Taken(Exception):
    """The login or identity is someone's already."""


class Missing(Exception):
    """No such user or token."""


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: `actor` is what the audit log names."""

    actor: str
    role: str
    user_id: int | None = None
    token_id: int | None = None
    csrf: str | None = None  # set for a cookie session: writes must carry it
    via: str = "open"  # open, bootstrap, token, cookie


def _aware(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def create_user(engine: Engine, login: str, role: str, password: str | None = None) -> User:
    """A new user (Taken when the login exists)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    user = User(login=login, role=role, password_hash=hash_password(password) if password else None)
    with Session(engine, expire_on_commit=False) as s:
        s.add(user)
        try:
            s.commit()
        except IntegrityError as exc:
            raise Taken(f"login {login!r} is taken") from exc
    return user


def users(engine: Engine) -> list[User]:
    with Session(engine, expire_on_commit=False) as s:
        return list(s.exec(select(User).order_by(User.id)))


def get_user(engine: Engine, user_id: int) -> User:
    with Session(engine, expire_on_commit=False) as s:
        user = s.get(User, user_id)
    if user is None:
        raise Missing(f"user {user_id} not found")
    return user


def link_identity(engine: Engine, user_id: int, service: str, external_id: str) -> Identity:
    """Say that `service:external_id` is this user (Taken when it is someone's already)."""
    get_user(engine, user_id)
    row = Identity(user_id=user_id, service=service, external_id=external_id)
    with Session(engine, expire_on_commit=False) as s:
        s.add(row)
        try:
            s.commit()
        except IntegrityError as exc:
            raise Taken(f"{service}:{external_id} is linked already") from exc
    return row


def signed_in(engine: Engine, auth: AuthConfig, service: str, external_id: str) -> User:
    """The user a verified sign-in names: the linked one, else a new one (Taken when the login is someone else's)."""
    with Session(engine, expire_on_commit=False) as s:
        ident = s.exec(select(Identity).where(Identity.service == service, Identity.external_id == external_id)).first()
        if ident is not None:
            user = s.get(User, ident.user_id)
            if user is None or user.disabled:
                raise Missing(f"{service}:{external_id} has no active user")
            return user
    role = "admin" if external_id in auth.admins else auth.default_role
    user = create_user(engine, external_id, role)  # Taken: an admin must link the identity to that user
    link_identity(engine, user.id, service, external_id)
    return user


def password_signin(engine: Engine, login: str, password: str) -> User | None:
    """The user whose local password this is (None otherwise; the check runs even for unknown logins)."""
    with Session(engine, expire_on_commit=False) as s:
        user = s.exec(select(User).where(User.login == login)).first()
    ok = check_password(password, user.password_hash if user else "scrypt$16384$8$1$AAAA$AAAA")
    return user if ok and user is not None and not user.disabled else None


def create_session(engine: Engine, user_id: int, hours: float) -> tuple[str, str]:
    """A new session: (the cookie value, its CSRF token). Only the cookie's sha256 is stored."""
    cookie, csrf = new_secret(), new_secret(24)
    row = AuthSession(id_hash=digest(cookie), user_id=user_id, csrf=csrf, expires_at=utcnow() + timedelta(hours=hours))
    with Session(engine) as s:
        s.add(row)
        s.commit()
    return cookie, csrf


def end_session(engine: Engine, cookie: str) -> None:
    with Session(engine) as s:
        row = s.exec(select(AuthSession).where(AuthSession.id_hash == digest(cookie))).first()
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()
            s.add(row)
            s.commit()


def session_principal(engine: Engine, cookie: str) -> Principal | None:
    """The signed-in user of a session cookie; None when unknown, expired, revoked or the user is disabled."""
    with Session(engine, expire_on_commit=False) as s:
        row = s.exec(select(AuthSession).where(AuthSession.id_hash == digest(cookie))).first()
        if row is None or row.revoked_at is not None or _aware(row.expires_at) <= utcnow():
            return None
        user = s.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    return Principal(user.login, user.role, user.id, None, row.csrf, "cookie")


def create_token(engine: Engine, user_id: int, scope: str, days: float | None, name: str = "") -> tuple[ApiToken, str]:
    """A new API token for the user: (its row, the token, shown once). Only its sha256 is stored."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    user = get_user(engine, user_id)
    if rank(SCOPES[scope]) > rank(user.role):
        raise ValueError(f"scope {scope} is above {user.login}'s role ({user.role})")
    prefix = new_secret(PREFIX_BYTES)  # url-safe: it may hold "_" itself, so it is found by its length
    token = f"{TOKEN_PREFIX}{prefix}_{new_secret()}"
    row = ApiToken(
        user_id=user_id, prefix=prefix, token_hash=digest(token), scope=scope, name=name,
        expires_at=utcnow() + timedelta(days=days) if days else None,
    )  # fmt: skip
    with Session(engine, expire_on_commit=False) as s:
        s.add(row)
        s.commit()
    return row, token


def get_token(engine: Engine, token_id: int) -> ApiToken:
    with Session(engine, expire_on_commit=False) as s:
        row = s.get(ApiToken, token_id)
    if row is None:
        raise Missing(f"token {token_id} not found")
    return row


def tokens_of(engine: Engine, user_id: int) -> list[ApiToken]:
    with Session(engine, expire_on_commit=False) as s:
        return list(s.exec(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)))


def revoke_token(engine: Engine, token_id: int) -> ApiToken:
    with Session(engine, expire_on_commit=False) as s:
        row = s.get(ApiToken, token_id)
        if row is None:
            raise Missing(f"token {token_id} not found")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            s.add(row)
            s.commit()
    return row


def token_principal(engine: Engine, token: str) -> Principal | None:
    """The principal of a personal bearer token; None when unknown, revoked, expired or its user disabled."""
    start = len(TOKEN_PREFIX)
    prefix = token[start : start + PREFIX_CHARS]
    if (
        not token.startswith(TOKEN_PREFIX)
        or len(prefix) != PREFIX_CHARS
        or token[start + PREFIX_CHARS : start + PREFIX_CHARS + 1] != "_"
    ):
        return None
    with Session(engine, expire_on_commit=False) as s:
        row = s.exec(select(ApiToken).where(ApiToken.prefix == prefix)).first()
        if row is None or not same(row.token_hash, digest(token)) or row.revoked_at is not None:
            return None
        if row.expires_at is not None and _aware(row.expires_at) <= utcnow():
            return None
        user = s.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    return Principal(user.login, lower(user.role, SCOPES.get(row.scope, "viewer")), user.id, row.id, None, "token")


def update_user(engine: Engine, user_id: int, role: str | None, disabled: bool | None) -> User:
    """Change a role or disable a user (a disabled user's sessions and tokens are refused from then on)."""
    with Session(engine, expire_on_commit=False) as s:
        user = s.get(User, user_id)
        if user is None:
            raise Missing(f"user {user_id} not found")
        if role is not None:
            if role not in ROLES:
                raise ValueError(f"role must be one of {', '.join(ROLES)}")
            user.role = role
        if disabled is not None:
            user.disabled = disabled
        s.add(user)
        s.commit()
    return user
