"""Webhooks from Plane, GitHub and Telegram: verify, de-duplicate by delivery id, hand over.

These routes sit outside `/api` (no bearer token): each sender proves itself instead, with an
HMAC of the raw body (Plane: `X-Plane-Signature`, GitHub: `X-Hub-Signature-256`) or a shared
secret header (Telegram: `X-Telegram-Bot-Api-Secret-Token`), compared in constant time.

Each delivery is claimed by its id, and the handlers claim what happened (a comment, a review, a
state change); a claim is released when the work fails, and the answer is then 503 so that the
sender's retry is processed rather than taken for a duplicate (`factory.integrations.claims`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from api.deps import CfgDep, EngineDep, get_launcher
from api.schemas import WebhookOutcome
from factory.config import FactoryConfig
from factory.domain.redact import scrub
from factory.domain.signing import same_secret, valid_hmac_sha256
from factory.integrations.claims import claimed
from factory.integrations.github.inbound import handle_github_event
from factory.integrations.plane.inbound import BadPayload, Refused, handle_plane_event
from factory.integrations.telegram.client import TelegramBot
from factory.integrations.telegram.inbound import UpdateHandler

log = logging.getLogger("api.webhooks")
router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _retry_later(cfg: FactoryConfig, source: str, exc: Exception) -> HTTPException:
    """A 503 for work that failed for now: the claims are released, so the sender's retry is processed."""
    reason = scrub(f"{type(exc).__name__}: {exc}", cfg.secret_values())[:500]
    log.warning("%s webhook not handled now, left for the sender's retry: %s", source, reason)
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"could not be handled now ({type(exc).__name__}); retry later",
        headers={"Retry-After": "30"},
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body is not JSON") from exc
    if not isinstance(payload, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body must be a JSON object")
    return payload


@router.post("/plane", response_model=WebhookOutcome)
async def plane_webhook(request: Request, cfg: CfgDep, engine: EngineDep) -> WebhookOutcome:
    """Plane: issues moved to queued start tasks, to cancelled cancel them; comments answer questions."""
    body = await request.body()
    secret = cfg.plane.webhook_secret
    if secret:
        if not valid_hmac_sha256(secret, body, request.headers.get("x-plane-signature")):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-Plane-Signature")
    elif not cfg.plane.allow_unsigned:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "Plane webhooks are refused: set plane.webhook_secret (or plane.allow_unsigned: true)",
        )
    payload = _json_object(body)
    if not isinstance(payload.get("event"), str):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "no 'event' in the payload")
    launcher = await get_launcher(request)
    delivery = request.headers.get("x-plane-delivery") or payload.get("delivery_id")
    try:
        async with claimed(
            engine, "plane", str(delivery) if delivery else None, keep_on=(BadPayload, Refused)
        ) as first:
            if delivery and not first:
                return {"status": "duplicate", "delivery": delivery}
            return await handle_plane_event(cfg, engine, launcher, payload, request.app.state.http)
    except BadPayload as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except Refused as exc:
        raise HTTPException(422, str(exc)) from exc
    except Exception as exc:
        raise _retry_later(cfg, "Plane", exc) from exc


@router.post("/github", response_model=WebhookOutcome)
async def github_webhook(request: Request, cfg: CfgDep, engine: EngineDep) -> WebhookOutcome:
    """GitHub: Factory PRs closed or merged, reviews, labelled issues, comments (mentions, answers), CI, pushes."""
    body = await request.body()
    secret = cfg.github.webhook_secret
    if not secret:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "GitHub webhooks are refused: set github.webhook_secret")
    if not valid_hmac_sha256(secret, body, request.headers.get("x-hub-signature-256"), prefix="sha256="):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-Hub-Signature-256")
    payload = _json_object(body)
    event = request.headers.get("x-github-event", "")
    launcher = await get_launcher(request)
    delivery = request.headers.get("x-github-delivery")
    try:
        async with claimed(engine, "github", delivery, keep_on=(ValueError,)) as first:
            if delivery and not first:
                return {"status": "duplicate", "delivery": delivery}
            return await handle_github_event(cfg, engine, launcher, request.app.state.http, event, payload)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except Exception as exc:
        raise _retry_later(cfg, "GitHub", exc) from exc


@router.post("/telegram", response_model=WebhookOutcome)
async def telegram_webhook(request: Request, cfg: CfgDep, engine: EngineDep) -> WebhookOutcome:
    """Telegram (webhook mode): replies and button presses from allowed chats answer questions."""
    secret = cfg.telegram.webhook_secret
    if not secret or not cfg.telegram_token:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Telegram webhook mode is off (telegram.webhook_secret)")
    if not same_secret(request.headers.get("x-telegram-bot-api-secret-token", ""), secret):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-Telegram-Bot-Api-Secret-Token")
    update = _json_object(await request.body())
    launcher = await get_launcher(request)
    uid = update.get("update_id")
    bot = TelegramBot(cfg.telegram_token, cfg.telegram.api_url, request.app.state.http)
    try:
        async with claimed(engine, "telegram", str(uid) if isinstance(uid, int) else None) as first:
            if isinstance(uid, int) and not first:
                return {"status": "duplicate"}
            outcome = await UpdateHandler(cfg, engine, bot).handle(update, launcher)
    except Exception as exc:
        raise _retry_later(cfg, "Telegram", exc) from exc
    return {"status": "ok", "outcome": outcome}
