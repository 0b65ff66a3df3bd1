"""People and their tokens: who am I, users (admin), per-person API tokens, linked identities.

Roles are checked before any route runs (`AuthGate`, by `factory.auth.roles`); the only check here
is the one the path cannot say: a token is revoked by its owner or by an admin.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool

from api.deps import EngineDep, IdPath, PrincipalDep
from api.errors import JSONRoute, responses
from api.people_schemas import (
    IdentityCreate,
    IdentityPublic,
    MePublic,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from factory.auth import people
from factory.auth.roles import SCOPES, rank
from factory.launcher import Conflict, LaunchError, NotFound
from factory.store.people import ApiToken

router = APIRouter(prefix="/api", tags=["users"], route_class=JSONRoute)


def _created(row: ApiToken, token: str) -> TokenCreated:
    return TokenCreated.model_validate({**TokenPublic.model_validate(row).model_dump(), "token": token})


def _new_token(engine: EngineDep, user_id: int, body: TokenCreate) -> TokenCreated:
    try:
        row, token = people.create_token(engine, user_id, body.scope, body.days, body.name)
    except people.Missing as exc:
        raise NotFound(str(exc)) from exc
    except ValueError as exc:
        raise LaunchError(str(exc)) from exc
    return _created(row, token)


@router.get("/me", response_model=MePublic, responses=responses(401))
async def me(principal: PrincipalDep) -> MePublic:
    """Who this request acts as, its role, and (for a signed-in browser) the CSRF token its writes must send."""
    return MePublic(
        actor=principal.actor, role=principal.role, user_id=principal.user_id, via=principal.via, csrf=principal.csrf
    )


@router.get("/me/tokens", response_model=list[TokenPublic], responses=responses(401))
async def my_tokens(principal: PrincipalDep, engine: EngineDep) -> list[TokenPublic]:
    """My API tokens (never the tokens themselves)."""
    if principal.user_id is None:
        return []
    rows = await run_in_threadpool(people.tokens_of, engine, principal.user_id)
    return [TokenPublic.model_validate(r) for r in rows]


@router.post(
    "/me/tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenCreated,
    responses=responses(401, 403, 409, 422),
)
async def create_my_token(body: TokenCreate, principal: PrincipalDep, engine: EngineDep) -> TokenCreated:
    """A new API token for me, shown once; its scope cannot be above my role (422)."""
    if principal.user_id is None:
        raise Conflict(f"{principal.actor} is no user: create a user and give them a token")
    if rank(SCOPES[body.scope]) > rank(principal.role):  # a read token must not mint an operate one
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"scope {body.scope} is above this request's role ({principal.role})"
        )
    return await run_in_threadpool(_new_token, engine, principal.user_id, body)


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserPublic, responses=responses(409, 422))
async def create_user(body: UserCreate, engine: EngineDep) -> UserPublic:
    """Add a person with a role (admin only); `password` lets them sign in locally when `auth.local` is on."""
    try:
        user = await run_in_threadpool(people.create_user, engine, body.login, body.role, body.password)
    except people.Taken as exc:
        raise Conflict(str(exc)) from exc
    return UserPublic.model_validate(user)


@router.get("/users", response_model=list[UserPublic], responses=responses(422))
async def list_users(engine: EngineDep) -> list[UserPublic]:
    """Everyone (admin only)."""
    return [UserPublic.model_validate(u) for u in await run_in_threadpool(people.users, engine)]


@router.patch("/users/{user_id}", response_model=UserPublic, responses=responses(404, 422))
async def update_user(user_id: IdPath, body: UserUpdate, engine: EngineDep) -> UserPublic:
    """Change a person's role, or disable them: their sessions and tokens stop working at once."""
    try:
        user = await run_in_threadpool(people.update_user, engine, user_id, body.role, body.disabled)
    except people.Missing as exc:
        raise NotFound(str(exc)) from exc
    return UserPublic.model_validate(user)


@router.post(
    "/users/{user_id}/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenCreated,
    responses=responses(404, 422),
)  # fmt: skip
async def create_user_token(user_id: IdPath, body: TokenCreate, engine: EngineDep) -> TokenCreated:
    """A new API token for this person (admin only), shown once; its scope cannot be above their role (422)."""
    return await run_in_threadpool(_new_token, engine, user_id, body)


@router.post(
    "/users/{user_id}/identities", status_code=status.HTTP_201_CREATED, response_model=IdentityPublic,
    responses=responses(404, 409, 422),
)  # fmt: skip
async def link_identity(user_id: IdPath, body: IdentityCreate, engine: EngineDep) -> IdentityPublic:
    """Say that a GitHub login, Plane member id, Telegram chat id or OIDC login is this person (audit names them)."""
    try:
        row = await run_in_threadpool(people.link_identity, engine, user_id, body.service, body.external_id)
    except people.Missing as exc:
        raise NotFound(str(exc)) from exc
    except people.Taken as exc:
        raise Conflict(str(exc)) from exc
    return IdentityPublic.model_validate(row)


@router.delete("/tokens/{token_id}", response_model=TokenPublic, responses=responses(403, 404, 422))
async def revoke_token(token_id: IdPath, principal: PrincipalDep, engine: EngineDep) -> TokenPublic:
    """Revoke a token: its next request is a 401. Its owner or an admin may."""
    try:
        row = await run_in_threadpool(people.get_token, engine, token_id)
    except people.Missing as exc:
        raise NotFound(str(exc)) from exc
    if row.user_id != principal.user_id and rank(principal.role) < rank("admin"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only its owner or an admin revokes a token")
    return TokenPublic.model_validate(await run_in_threadpool(people.revoke_token, engine, token_id))
