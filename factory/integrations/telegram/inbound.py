"""Answers from a phone: Telegram replies and button presses from allowed chats answer questions.

A reply to a question's message (or to its options message), or a button press, from an allowed
chat (`telegram.chat_id` + `telegram.allowed_chat_ids`) is delivered to the task as the answer
(`answered_by="telegram:<user>"`) and the bot confirms. Updates come by long polling `getUpdates`
(default; the offset is kept in the database) or by `POST /webhooks/telegram` when
`telegram.webhook_secret` is set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
from markupsafe import escape
from sqlalchemy.engine import Engine
from sqlmodel import select

from factory.config import FactoryConfig
from factory.integrations.telegram.client import TelegramBot, TelegramError
from factory.launcher import AnswerRefused, Launcher
from factory.store import audit
from factory.store.kv import kv_get, kv_set
from factory.store.tables import Question, session_scope

log = logging.getLogger("factory.integrations.telegram.inbound")


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

    async def handle(self, update: dict[str, Any], launcher: Launcher) -> str:
        """Process one update; returns what happened (for logs and tests), and logs it once, ignored or not."""
        outcome = await self._handle(update, launcher)
        log.info("Telegram update %s: %s", update.get("update_id"), outcome)
        return outcome

    async def _handle(self, update: dict[str, Any], launcher: Launcher) -> str:
        if isinstance(update.get("callback_query"), dict):
            return await self._button(update["callback_query"], launcher)
        msg = update.get("message")
        if not isinstance(msg, dict):
            return "ignored: not a message"
        chat = str((msg.get("chat") or {}).get("id", ""))
        if chat not in self.allowed:
            return "ignored: chat not allowed"
        reply_to = msg.get("reply_to_message") or {}
        text = str(msg.get("text") or "").strip()
        qid = await asyncio.to_thread(self._question_for, chat, reply_to.get("message_id"))
        if qid is None or not text:
            if text and not text.startswith("/"):
                await self._say(chat, "To answer a question, reply to the question's message.", msg.get("message_id"))
            return "ignored: not a reply to a question"
        return await self._answer(launcher, chat, qid, text, _user(msg.get("from")), msg.get("message_id"))

    def _question_for(self, chat: str, message_id: Any) -> int | None:
        if not isinstance(message_id, int):
            return None
        known = kv_get(self.engine, f"telegram:question:{chat}:{message_id}")
        if known and known.isdigit():
            return int(known)
        if chat == str(self.cfg.telegram.chat_id):
            with session_scope(self.engine) as s:
                q = s.exec(select(Question).where(Question.telegram_message_id == message_id)).first()
                return q.id if q else None
        return None

    def _question(self, qid: int) -> Question | None:
        with session_scope(self.engine) as s:
            return s.get(Question, qid)

    async def _button(self, cq: dict[str, Any], launcher: Launcher) -> str:
        chat = str(((cq.get("message") or {}).get("chat") or {}).get("id", ""))
        if chat not in self.allowed:
            return "ignored: chat not allowed"
        data = str(cq.get("data") or "")
        parts = data.split(":")
        if len(parts) != 3 or parts[0] != "answer" or not parts[1].isdigit() or not parts[2].isdigit():
            await self._ack(cq, "Unknown button")
            return "ignored: unknown button"
        qid, idx = int(parts[1]), int(parts[2])
        q = await asyncio.to_thread(self._question, qid)
        options = list(q.options or []) if q else []
        if idx >= len(options):
            await self._ack(cq, "That option no longer exists")
            return "ignored: unknown option"
        result = await self._answer(launcher, chat, qid, options[idx], _user(cq.get("from")), None)
        await self._ack(cq, "Answer sent" if result.startswith("answered") else "Not delivered")
        return result

    async def _answer(self, launcher: Launcher, chat: str, qid: int, text: str, user: str, reply_to: int | None) -> str:
        q = await asyncio.to_thread(self._question, qid)
        task_id = q.task_id if q else None
        if task_id is None:
            return "ignored: unknown question"
        try:
            await launcher.deliver_answer(task_id, text, f"telegram:{user}", qid)
        except AnswerRefused as exc:
            await self._say(chat, f"⚠️ Not delivered to task #{task_id}: {exc}", reply_to)
            return f"refused: {exc}"
        await audit.arecord(
            self.engine, f"telegram:{chat}", "task.answer", f"task:{task_id}", source="telegram", task_id=task_id
        )
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
MAX_HANDLING_FAILURES = 5
"""Failures of one update, with the workflow engine up, after which it is skipped as unprocessable."""


async def poll_updates(
    cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient, get_launcher: Callable[[], Launcher | None]
) -> None:
    """Long-poll `getUpdates` forever, keeping the offset in the database (runs as a background task).

    The offset moves past an update only once it was handled. When handling fails (Temporal briefly
    down), the same update is fetched again after a back-off; one that keeps failing while the engine
    answers is skipped after `MAX_HANDLING_FAILURES` attempts, so it cannot hold up the others.
    `get_launcher` returns None until the worker is connected, and is asked again for each update.
    """
    bot = TelegramBot(cfg.telegram_token, cfg.telegram.api_url, http)
    handler = UpdateHandler(cfg, engine, bot)
    stored = await asyncio.to_thread(kv_get, engine, OFFSET_KEY)
    offset = int(stored) if stored and stored.lstrip("-").isdigit() else None
    backoff = 1.0
    failures = 0
    while True:
        launcher = get_launcher()
        if launcher is None:
            await asyncio.sleep(0.1)
            continue
        try:
            updates = await bot.get_updates(offset)
        except TelegramError as exc:
            if exc.status == 409:
                log.warning("getUpdates refused (a webhook is set, or another poller runs): %s", exc)
            else:
                log.warning("getUpdates failed: %s", exc)
            await asyncio.sleep(exc.retry_after or backoff)
            backoff = min(backoff * 2, 60)
            continue
        stalled = False
        for update in updates or []:
            uid = update.get("update_id")
            launcher = get_launcher() or launcher  # the one in force now, not the one of a minute-long poll's start
            try:
                await handler.handle(update, launcher)  # it logs what it did
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("Telegram update %s could not be handled; it is fetched again", uid, exc_info=True)
                failures += await _counts_as_failure(launcher)
                if failures < MAX_HANDLING_FAILURES:
                    stalled = True
                    break
                log.error("Telegram update %s skipped after %s failed attempts", uid, failures)
            failures = 0
            if isinstance(uid, int):
                offset = uid + 1
                await asyncio.to_thread(kv_set, engine, OFFSET_KEY, str(offset))
        if stalled:
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30)
        else:
            backoff = 1.0


async def _counts_as_failure(launcher: Launcher) -> int:
    """1 when the engine answers (the update itself is at fault), 0 while it is down (the update must wait)."""
    try:
        await launcher.check_health()
    except Exception:
        return 0
    return 1
