"""Telegram notifier: task events to the Telegram chat, and board messages to the board chat.

A question is sent with `force_reply`, and its options (if any) as a second message with one
inline button each; the message ids are remembered so a reply or a button press finds the
question (`factory.integrations.telegram.inbound`). Each send runs in its own retried activity.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from markupsafe import Markup
from sqlalchemy.engine import Engine

from factory.config import FactoryConfig
from factory.contracts import TaskEvent
from factory.domain.budgets import usd
from factory.domain.redact import scrub
from factory.integrations.telegram.client import TelegramBot, TelegramError, clip_escaped
from factory.store.kv import kv_get, kv_set
from factory.store.tables import Message, Question, session_scope

log = logging.getLogger("factory.integrations.telegram.notifier")

KINDS = frozenset({"started", "completed", "failed", "cancelled", "question", "workflow_iteration", "preview"})


def _who(e: TaskEvent) -> str:
    return f"task #{e.task_id}" if e.task_id is not None else f"workflow #{e.workflow_run_id}"


def format_event(e: TaskEvent, secrets: list[str] = ()) -> str | None:
    """The HTML text of an event's message, or None for events Telegram does not get."""
    title = clip_escaped(e.title or "", 300)
    who = _who(e)
    if e.kind == "started":
        text = Markup("▶️ <b>Started</b> {}: {}").format(who, title)
        if e.branch:
            text += Markup("\nBranch: <code>{}</code>").format(clip_escaped(e.branch, 300))
    elif e.kind == "completed":
        text = Markup("✅ <b>Done</b> {}: {}").format(who, title)
        if e.pr_url:
            text += Markup('\nPR: <a href="{0}">{1}</a>').format(e.pr_url, clip_escaped(e.pr_url, 500))
        else:
            text += Markup("\nNo pull request (no changes).")
    elif e.kind == "failed":
        error = scrub(e.error or "unknown error", secrets)
        text = Markup("❌ <b>Failed</b> {}: {}\n<pre>{}</pre>").format(who, title, clip_escaped(error, 1500))
    elif e.kind == "cancelled":
        text = Markup("⏹ <b>Cancelled</b> {}: {}").format(who, title)
    elif e.kind == "workflow_iteration":
        text = Markup("🔁 {}: {} — iteration {}").format(who, title, e.iteration if e.iteration is not None else "?")
        if e.summary:
            text += Markup("\n{}").format(clip_escaped(scrub(e.summary, secrets), 1500))
    elif e.kind == "preview":
        text = Markup('Preview for {}: <a href="{}">{}</a>').format(title, e.url or "", clip_escaped(e.url or "", 500))
    elif e.kind == "question":
        text = Markup("❓ <b>{} asks</b> ({}):\n\n{}\n\n<i>Reply to this message to answer.</i>").format(
            who.capitalize(), title, clip_escaped(scrub(e.question or "", secrets), 3000)
        )
    else:
        return None
    if e.kind in ("completed", "failed") and e.cost_usd is not None:
        text += Markup("\nCost: {}").format(usd(e.cost_usd))
    return str(text)


def _event_key(e: TaskEvent) -> str:
    return f"{e.kind}:t{e.task_id}:w{e.workflow_run_id}:q{e.question_id}:i{e.iteration}:{e.url or ''}"



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
            raise exc.as_application_error() from None

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
            msg.sender, to, where, msg.message_type, clip_escaped(scrub(msg.content, self.cfg.secret_values()), 3500)
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
