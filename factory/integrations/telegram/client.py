"""Telegram: a Bot API client, the notifier, board forwarding, and answers from a phone.

Messages use parse mode HTML with every piece of text escaped, and stay under Telegram's
4096-character limit by clipping the variable parts. A question is sent with `force_reply`, and
its options (if any) as a second message with one inline button each. A reply to either message,
or a button press, from an allowed chat (`telegram.chat_id` + `telegram.allowed_chat_ids`) is
delivered to the task as the answer (`answered_by="telegram:<user>"`) and the bot confirms.
Updates come by long polling `getUpdates` (default; the offset is kept in the database) or by
`POST /webhooks/telegram` when `telegram.webhook_secret` is set.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import httpx
from markupsafe import Markup, escape
from sqlalchemy.engine import Engine
from temporalio.exceptions import ApplicationError

from factory.config import FactoryConfig
from factory.contracts import TaskEvent
from factory.domain.redact import scrub
from factory.store.kv import kv_get, kv_set
from factory.store.tables import Message, Question, session_scope

log = logging.getLogger("factory.integrations.telegram.client")

MAX_CHARS = 4096
POLL_TIMEOUT_S = 25
KINDS = frozenset({"started", "completed", "failed", "cancelled", "question", "workflow_iteration", "preview"})


class TelegramError(Exception):
    """A Bot API call failed; `retry_after` is set on 429 (flood control)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


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


def clip(text: str, limit: int) -> Markup:
    """Escape `text`, cut so that the escaped form has at most `limit` characters (ending with …)."""
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


def _who(e: TaskEvent) -> str:
    return f"task #{e.task_id}" if e.task_id is not None else f"workflow #{e.workflow_run_id}"


def format_event(e: TaskEvent, secrets: list[str] = ()) -> str | None:
    """The HTML text of an event's message, or None for events Telegram does not get."""
    title = clip(e.title or "", 300)
    who = _who(e)
    if e.kind == "started":
        text = Markup("▶️ <b>Started</b> {}: {}").format(who, title)
        if e.branch:
            text += Markup("\nBranch: <code>{}</code>").format(clip(e.branch, 300))
    elif e.kind == "completed":
        text = Markup("✅ <b>Done</b> {}: {}").format(who, title)
        if e.pr_url:
            text += Markup('\nPR: <a href="{0}">{1}</a>').format(e.pr_url, clip(e.pr_url, 500))
        else:
            text += Markup("\nNo pull request (no changes).")
    elif e.kind == "failed":
        error = scrub(e.error or "unknown error", secrets)
        text = Markup("❌ <b>Failed</b> {}: {}\n<pre>{}</pre>").format(who, title, clip(error, 1500))
    elif e.kind == "cancelled":
        text = Markup("⏹ <b>Cancelled</b> {}: {}").format(who, title)
    elif e.kind == "workflow_iteration":
        text = Markup("🔁 {}: {} — iteration {}").format(who, title, e.iteration if e.iteration is not None else "?")
        if e.summary:
            text += Markup("\n{}").format(clip(scrub(e.summary, secrets), 1500))
    elif e.kind == "preview":
        text = Markup('Preview for {}: <a href="{}">{}</a>').format(title, e.url or "", clip(e.url or "", 500))
    elif e.kind == "question":
        text = Markup("❓ <b>{} asks</b> ({}):\n\n{}\n\n<i>Reply to this message to answer.</i>").format(
            who.capitalize(), title, clip(scrub(e.question or "", secrets), 3000)
        )
    else:
        return None
    return str(text)


def _event_key(e: TaskEvent) -> str:
    return f"{e.kind}:t{e.task_id}:w{e.workflow_run_id}:q{e.question_id}:i{e.iteration}:{e.url or ''}"


def as_application_error(exc: TelegramError) -> ApplicationError:
    if exc.status == 429:
        return ApplicationError(
            str(exc), type="TelegramRateLimited", next_retry_delay=timedelta(seconds=exc.retry_after or 5)
        )
    permanent = exc.status is not None and 400 <= exc.status < 500
    return ApplicationError(str(exc), type="TelegramError", non_retryable=permanent)


class TelegramNotifier:
    """Task events to the Telegram chat (a `Notifier`), and board messages to the board chat."""

    name = "telegram"

    def __init__(self, cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient | None = None):
        self.cfg = cfg
        self.engine = engine
        self.bot = TelegramBot(cfg.telegram_token, cfg.telegram.api_url, http)

    @property
    def configured(self) -> bool:
        return bool(self.cfg.telegram_token and self.cfg.telegram.chat_id)

    def wants(self, event: TaskEvent) -> bool:
        return self.configured and event.kind in KINDS

    async def send(self, event: TaskEvent) -> None:
        text = format_event(event, self.cfg.secret_values())
        if text is None:
            return
        chat = self.cfg.telegram.chat_id
        try:
            if event.kind == "question":
                await self._send_question(chat, event, text)
            else:
                await self._send_once(f"{_event_key(event)}", chat, text)
        except TelegramError as exc:
            raise as_application_error(exc) from None

    async def _send_once(self, key: str, chat: str, text: str, markup: dict[str, Any] | None = None) -> int | None:
        """Send unless an earlier attempt of this activity already did; returns the message id."""
        done = kv_get(self.engine, f"telegram:sent:{key}")
        if done is not None:
            return int(done) if done.isdigit() else None
        msg = await self.bot.send_message(chat, text, reply_markup=markup)
        mid = (msg or {}).get("message_id")
        kv_set(self.engine, f"telegram:sent:{key}", str(mid or ""))
        return mid

    async def _send_question(self, chat: str, e: TaskEvent, text: str) -> None:
        key = _event_key(e)
        markup = {"force_reply": True, "input_field_placeholder": "Your answer"}
        mid = await self._send_once(key, chat, text, markup)
        if mid is None or e.question_id is None:
            return
        kv_set(self.engine, f"telegram:question:{chat}:{mid}", str(e.question_id))
        with session_scope(self.engine) as s:
            q = s.get(Question, e.question_id)
            if q is not None and q.telegram_message_id is None:
                q.telegram_message_id = mid
                s.add(q)
                s.commit()
        if e.options:
            buttons = [
                [{"text": str(o)[:60], "callback_data": f"answer:{e.question_id}:{i}"}]
                for i, o in enumerate(e.options[:20])
            ]
            opts = await self._send_once(
                key + ":options",
                chat,
                str(Markup("Or pick an answer for {}:").format(_who(e))),
                {"inline_keyboard": buttons},
            )
            if opts is not None:
                kv_set(self.engine, f"telegram:question:{chat}:{opts}", str(e.question_id))

    async def forward_board_message(self, msg: Message) -> None:
        """Board listener: agents' messages whose type is in `message_board.forward_types`."""
        board = self.cfg.message_board
        if not (board.telegram_forward and self.cfg.telegram_token) or msg.message_type not in board.forward_types:
            return
        if msg.sender == "factory":
            return  # Factory's own event posts reach Telegram as task notifications already
        chat = board.telegram_chat_id or self.cfg.telegram.chat_id
        if not chat:
            return
        where = f" (task #{msg.task_id})" if msg.task_id is not None else ""
        to = f" → {msg.recipient}" if msg.recipient else ""
        text = Markup("💬 <b>{}</b>{}{} [{}]:\n{}").format(
            msg.sender, to, where, msg.message_type, clip(scrub(msg.content, self.cfg.secret_values()), 3500)
        )
        for attempt in range(3):  # not durable: a few quick tries, then a warning
            try:
                await self.bot.send_message(chat, str(text))
                return
            except TelegramError as exc:
                if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                    break
                await asyncio.sleep(min(exc.retry_after or 2**attempt, 30))
        log.warning("could not forward board message #%s to Telegram", msg.id)


def allowed_chats(cfg: FactoryConfig) -> set[str]:
    return {str(c) for c in [cfg.telegram.chat_id, *cfg.telegram.allowed_chat_ids] if str(c)}


def _user(u: dict[str, Any] | None) -> str:
    u = u or {}
    return str(u.get("username") or u.get("first_name") or u.get("id") or "unknown")


class UpdateHandler:
    """Turns Telegram updates (replies, button presses) into answers; other chats are ignored."""

    def __init__(self, cfg: FactoryConfig, engine: Engine, bot: TelegramBot):
        self.cfg = cfg
        self.engine = engine
        self.bot = bot
        self.allowed = allowed_chats(cfg)

    async def handle(self, update: dict[str, Any], client: Any) -> str:
        """Process one update; returns what happened (for logs and tests)."""
        if isinstance(update.get("callback_query"), dict):
            return await self._button(update["callback_query"], client)
        msg = update.get("message")
        if not isinstance(msg, dict):
            return "ignored: not a message"
        chat = str((msg.get("chat") or {}).get("id", ""))
        if chat not in self.allowed:
            return "ignored: chat not allowed"
        reply_to = msg.get("reply_to_message") or {}
        text = str(msg.get("text") or "").strip()
        qid = self._question_for(chat, reply_to.get("message_id"))
        if qid is None or not text:
            if text and not text.startswith("/"):
                await self._say(chat, "To answer a question, reply to the question's message.", msg.get("message_id"))
            return "ignored: not a reply to a question"
        return await self._answer(client, chat, qid, text, _user(msg.get("from")), msg.get("message_id"))

    def _question_for(self, chat: str, message_id: Any) -> int | None:
        if not isinstance(message_id, int):
            return None
        known = kv_get(self.engine, f"telegram:question:{chat}:{message_id}")
        if known and known.isdigit():
            return int(known)
        if chat == str(self.cfg.telegram.chat_id):
            from sqlmodel import select

            with session_scope(self.engine) as s:
                q = s.exec(select(Question).where(Question.telegram_message_id == message_id)).first()
                return q.id if q else None
        return None

    async def _button(self, cq: dict[str, Any], client: Any) -> str:
        chat = str(((cq.get("message") or {}).get("chat") or {}).get("id", ""))
        if chat not in self.allowed:
            return "ignored: chat not allowed"
        data = str(cq.get("data") or "")
        parts = data.split(":")
        if len(parts) != 3 or parts[0] != "answer" or not parts[1].isdigit() or not parts[2].isdigit():
            await self._ack(cq, "Unknown button")
            return "ignored: unknown button"
        qid, idx = int(parts[1]), int(parts[2])
        with session_scope(self.engine) as s:
            q = s.get(Question, qid)
            options = list(q.options or []) if q else []
        if idx >= len(options):
            await self._ack(cq, "That option no longer exists")
            return "ignored: unknown option"
        result = await self._answer(client, chat, qid, options[idx], _user(cq.get("from")), None)
        await self._ack(cq, "Answer sent" if result.startswith("answered") else "Not delivered")
        return result

    async def _answer(self, client: Any, chat: str, qid: int, text: str, user: str, reply_to: int | None) -> str:
        from api.launch import AnswerRefused, deliver_answer

        with session_scope(self.engine) as s:
            q = s.get(Question, qid)
            task_id = q.task_id if q else None
        if task_id is None:
            return "ignored: unknown question"
        try:
            await deliver_answer(self.cfg, client, task_id, text, f"telegram:{user}", qid)
        except AnswerRefused as exc:
            await self._say(chat, f"⚠️ Not delivered to task #{task_id}: {exc}", reply_to)
            return f"refused: {exc}"
        await self._say(chat, f"✅ Answer sent to task #{task_id}; the agent continues.", reply_to)
        return f"answered question #{qid} of task #{task_id}"

    async def _say(self, chat: str, text: str, reply_to: int | None) -> None:
        try:
            await self.bot.send_message(chat, str(escape(text)), reply_to=reply_to)
        except TelegramError as exc:
            log.warning("could not confirm on Telegram: %s", exc)

    async def _ack(self, cq: dict[str, Any], text: str) -> None:
        try:
            await self.bot.answer_callback_query(str(cq.get("id")), text)
        except TelegramError as exc:
            log.warning("answerCallbackQuery failed: %s", exc)


OFFSET_KEY = "telegram:offset"


async def poll_updates(cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient, get_client: Any) -> None:
    """Long-poll `getUpdates` forever, keeping the offset in the database (runs as a background task)."""
    bot = TelegramBot(cfg.telegram_token, cfg.telegram.api_url, http)
    handler = UpdateHandler(cfg, engine, bot)
    client = None
    while client is None:  # the worker hands its Temporal client over once it runs
        client = get_client()
        if client is None:
            await asyncio.sleep(0.1)
    stored = kv_get(engine, OFFSET_KEY)
    offset = int(stored) if stored and stored.lstrip("-").isdigit() else None
    backoff = 1.0
    while True:
        try:
            updates = await bot.get_updates(offset)
            backoff = 1.0
        except TelegramError as exc:
            if exc.status == 409:
                log.warning("getUpdates refused (a webhook is set, or another poller runs): %s", exc)
            else:
                log.warning("getUpdates failed: %s", exc)
            await asyncio.sleep(exc.retry_after or backoff)
            backoff = min(backoff * 2, 60)
            continue
        for update in updates or []:
            uid = update.get("update_id")
            try:
                outcome = await handler.handle(update, client)
                log.info("Telegram update %s: %s", uid, outcome)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Telegram update %s could not be handled", uid)
            if isinstance(uid, int):
                offset = uid + 1
                kv_set(engine, OFFSET_KEY, str(offset))
