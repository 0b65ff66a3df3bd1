"""Telegram: the Bot API client Factory uses, and escaping text for its HTML parse mode.

Messages use parse mode HTML with every piece of text escaped, and stay under Telegram's
4096-character limit by clipping the variable parts (`clip_escaped`).
"""

from __future__ import annotations

from typing import Any

import httpx
from markupsafe import Markup, escape

from factory.domain.redact import scrub
from factory.integrations.errors import ServiceError

MAX_CHARS = 4096
POLL_TIMEOUT_S = 25


class TelegramError(ServiceError):
    """A Bot API call failed; `retry_after` is set on 429 (flood control)."""

    service = "Telegram"


class TelegramBot:
    """The Bot API methods Factory uses, against `telegram.api_url`."""

    def __init__(self, token: str, api_url: str = "https://api.telegram.org", http: httpx.AsyncClient | None = None):
        self.token = token
        self.api_url = api_url.rstrip("/")
        self.http = http or httpx.AsyncClient(timeout=20)

    async def call(self, method: str, http_timeout: float = 15, **params: Any) -> Any:
        url = f"{self.api_url}/bot{self.token}/{method}"
        body = {k: v for k, v in params.items() if v is not None}
        try:
            r = await self.http.post(url, json=body, timeout=http_timeout)
        except httpx.HTTPError as exc:  # the URL holds the token: never put it in the message
            raise TelegramError(f"Telegram {method}: {type(exc).__name__}") from None
        try:
            data = r.json()
        except ValueError:
            data = {}
        if r.status_code == 200 and data.get("ok"):
            return data.get("result")
        desc = scrub(str(data.get("description") or r.text[:200]), [self.token])
        retry = (data.get("parameters") or {}).get("retry_after")
        raise TelegramError(
            f"Telegram {method}: HTTP {r.status_code}: {desc}", r.status_code, float(retry) if retry else None
        )

    async def send_message(
        self, chat_id: str | int, text: str, reply_markup: dict[str, Any] | None = None, reply_to: int | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "chat_id": chat_id,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
            "reply_markup": reply_markup,
        }
        if reply_to is not None:
            params["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
        return await self.call("sendMessage", **params)

    async def answer_callback_query(self, callback_query_id: str, text: str | None = None) -> None:
        await self.call("answerCallbackQuery", callback_query_id=callback_query_id, text=text)

    async def get_updates(self, offset: int | None, timeout: int = POLL_TIMEOUT_S) -> list[dict[str, Any]]:
        return await self.call(
            "getUpdates",
            http_timeout=timeout + 15,
            offset=offset,
            timeout=timeout,
            allowed_updates=["message", "callback_query"],
        )


def clip_escaped(text: str, limit: int) -> Markup:
    """Escape `text`, cut so that the escaped form has at most `limit` characters (ending with …).

    Not `factory.domain.text.clip`: Telegram counts the escaped text, and an entity (`&lt;`) must
    never be cut in half.
    """
    out: list[str] = []
    used = 0
    for ch in text:
        piece = str(escape(ch))
        if used + len(piece) > limit - 1:
            out.append("…")
            break
        out.append(piece)
        used += len(piece)
    return Markup("".join(out))
