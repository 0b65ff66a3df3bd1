"""Webhooks from Plane, GitHub and Telegram: verify, de-duplicate by delivery id, hand over.

These routes sit outside `/api` (no bearer token): each sender proves itself instead, with an
HMAC of the raw body (Plane: `X-Plane-Signature`, GitHub: `X-Hub-Signature-256`) or a shared
secret header (Telegram: `X-Telegram-Bot-Api-Secret-Token`), compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException, Request, status

from api.deps import CfgDep, EngineDep
from factory.integrations.github.inbound import handle_github_event, valid_signature
from factory.integrations.plane.inbound import BadPayload, Refused, handle_plane_event
from factory.integrations.telegram.client import TelegramBot, UpdateHandler
from factory.store.kv import claim_delivery, release_delivery

log = logging.getLogger("factory.webhooks")

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body is not JSON") from exc
    if not isinstance(payload, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body must be a JSON object")
    return payload


def _client(request: Request) -> Any:
    client = request.app.state.temporal
    if client is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Temporal is not connected")
    return client


def plane_signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Plane-Signature` is the hex HMAC-SHA256 of the raw body with the webhook's secret."""
    if not header:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode())


@router.post("/plane")
async def plane_webhook(request: Request, cfg: CfgDep, engine: EngineDep) -> dict[str, Any]:
    """Plane: issues moved to queued start tasks, to cancelled cancel them; comments answer questions."""
    body = await request.body()
    secret = cfg.plane.webhook_secret
    if secret:
        if not plane_signature_ok(secret, body, request.headers.get("x-plane-signature")):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-Plane-Signature")
    elif not cfg.plane.allow_unsigned:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "Plane webhooks are refused: set plane.webhook_secret (or plane.allow_unsigned: true)",
        )
    payload = _json_object(body)
    if not isinstance(payload.get("event"), str):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "no 'event' in the payload")
    client = _client(request)
    delivery = request.headers.get("x-plane-delivery")
    if delivery and not claim_delivery(engine, "plane", delivery):
        return {"status": "duplicate", "delivery": delivery}
    try:
        async with httpx.AsyncClient(timeout=20) as http:
            return await handle_plane_event(cfg, engine, client, payload, http)
    except BadPayload as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except Refused as exc:
        raise HTTPException(422, str(exc)) from exc
    except Exception:
        if delivery:
            release_delivery(engine, "plane", delivery)  # let Plane's retry try again
        raise


@router.post("/github")
async def github_webhook(request: Request, cfg: CfgDep, engine: EngineDep) -> dict[str, Any]:
    """GitHub: Factory PRs closed or merged, and reviews that request changes."""
    body = await request.body()
    if not cfg.github.webhook_secret:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "GitHub webhooks are refused: set github.webhook_secret")
    if not valid_signature(cfg.github.webhook_secret, body, request.headers.get("x-hub-signature-256")):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-Hub-Signature-256")
    payload = _json_object(body)
    event = request.headers.get("x-github-event", "")
    client = _client(request)
    delivery = request.headers.get("x-github-delivery")
    if delivery and not claim_delivery(engine, "github", delivery):
        return {"status": "duplicate", "delivery": delivery}
    try:
        async with httpx.AsyncClient(timeout=20) as http:
            return await handle_github_event(cfg, engine, client, http, event, payload)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except Exception:
        if delivery:
            release_delivery(engine, "github", delivery)
        raise


@router.post("/telegram")
async def telegram_webhook(request: Request, cfg: CfgDep, engine: EngineDep) -> dict[str, Any]:
    """Telegram (webhook mode): replies and button presses from allowed chats answer questions."""
    secret = cfg.telegram.webhook_secret
    if not secret or not cfg.telegram_token:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Telegram webhook mode is off (telegram.webhook_secret)")
    given = request.headers.get("x-telegram-bot-api-secret-token", "")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-Telegram-Bot-Api-Secret-Token")
    update = _json_object(await request.body())
    client = _client(request)
    uid = update.get("update_id")
    if isinstance(uid, int) and not claim_delivery(engine, "telegram", str(uid)):
        return {"status": "duplicate"}
    async with httpx.AsyncClient(timeout=20) as http:
        bot = TelegramBot(cfg.telegram_token, cfg.telegram.api_url, http)
        outcome = await UpdateHandler(cfg, engine, bot).handle(update, client)
    return {"status": "ok", "outcome": outcome}
