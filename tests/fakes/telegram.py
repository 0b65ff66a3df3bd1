"""A stand-in Telegram Bot API server: `POST /bot<token>/<method>`, recording every call.

- `sendMessage` returns a Message with a fresh `message_id`; `answerCallbackQuery`, `setWebhook`,
  `deleteWebhook` answer `true`.
- `getUpdates` long-polls: it answers as soon as an update with `update_id >= offset` is queued
  (`reply()`, `press()`, `push()`), or after `timeout` seconds with `[]`.
- `fail_sends` makes the next `sendMessage` calls fail: a status (500) or `(429, retry_after)`,
  answered in the Bot API's error shape (`{"ok": false, "error_code", "description",
  "parameters": {"retry_after"}}`). `always_fail` fails every `sendMessage` with that status.
- `polling` / `most_polling`: the getUpdates calls open now, and the most ever open at once.
- `down()` / `recover()`: an outage: every call (polls included) is answered 502 Bad Gateway, as a
  proxy in front of a dead Bot API would, until `recover()`; `downtime` records when.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.http import BackgroundServer


@dataclass
class Sent:
    method: str
    body: dict[str, Any]
    at: float
    ok: bool
    message_id: int | None = None
    status: int = 200


@dataclass
class FakeTelegram:
    token: str = "12345678:AAF-fake-telegram-token-abcdefghijkl"
    calls: list[Sent] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    offsets: list[int | None] = field(default_factory=list)
    fail_sends: list[Any] = field(default_factory=list)
    always_fail: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: BackgroundServer | None = None
    url: str = ""
    _next_message: int = 100
    _next_update: int = 5000
    _closing: bool = False
    outage: bool = False
    downtime: list[tuple[float, float | None]] = field(default_factory=list)  # (from, until) monotonic
    polling: int = 0  # getUpdates calls being answered now (the real API refuses a second with 409)
    most_polling: int = 0  # the most there ever were at once

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/bot{token}/{method}")
        async def call(token: str, method: str, request: Request) -> Any:
            raw = await request.body()
            body = json.loads(raw) if raw else {}
            if token != self.token:
                return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401)
            with self.lock:
                if self.outage:
                    self.calls.append(Sent(method, body, time.monotonic(), False, status=502))
                    return JSONResponse({"ok": False, "error_code": 502, "description": "Bad Gateway"}, status_code=502)
            if method == "getUpdates":
                return await self._get_updates(body, request)
            with self.lock:
                failure = None
                if method == "sendMessage":
                    failure = self.fail_sends.pop(0) if self.fail_sends else self.always_fail
                sent = Sent(method, body, time.monotonic(), failure is None)
                self.calls.append(sent)
                if failure:
                    status, retry = failure if isinstance(failure, tuple) else (failure, None)
                    sent.status = status
                    err: dict[str, Any] = {"ok": False, "error_code": status, "description": "Internal Server Error"}
                    if status == 429:
                        err["description"] = f"Too Many Requests: retry after {retry}"
                        err["parameters"] = {"retry_after": retry}
                    return JSONResponse(err, status_code=status)
                if method == "sendMessage":
                    self._next_message += 1
                    sent.message_id = self._next_message
                    chat = body.get("chat_id")
                    msg = {
                        "message_id": self._next_message,
                        "date": int(time.time()),
                        "chat": {"id": int(chat) if str(chat).lstrip("-").isdigit() else chat, "type": "private"},
                        "from": {"id": 1, "is_bot": True, "first_name": "Factory", "username": "factory_bot"},
                        "text": body.get("text", ""),
                    }
                    return {"ok": True, "result": msg}
            return {"ok": True, "result": True}

        return app

    async def _get_updates(self, body: dict[str, Any], request: Request) -> Any:
        with self.lock:
            self.polling += 1
            self.most_polling = max(self.most_polling, self.polling)
        try:
            return await self._long_poll(body, request)
        finally:
            with self.lock:
                self.polling -= 1

    async def _long_poll(self, body: dict[str, Any], request: Request) -> Any:
        offset = body.get("offset")
        deadline = time.monotonic() + float(body.get("timeout") or 0)
        with self.lock:
            self.offsets.append(offset)
        while True:
            with self.lock:
                ready = [u for u in self.updates if offset is None or u["update_id"] >= offset]
            if ready or time.monotonic() >= deadline or self._closing:
                return {"ok": True, "result": ready}
            if await request.is_disconnected():
                return {"ok": True, "result": []}
            await asyncio.sleep(0.05)

    def start(self) -> str:
        self.server = BackgroundServer(self.app())
        self.url = self.server.start()
        return self.url

    def down(self) -> None:
        """Start an outage: every call is answered 502 until `recover()`."""
        with self.lock:
            self.outage = True
            self.downtime.append((time.monotonic(), None))

    def recover(self) -> None:
        """End the outage."""
        with self.lock:
            self.outage = False
            self.downtime[-1] = (self.downtime[-1][0], time.monotonic())

    def stop(self) -> None:
        self._closing = True
        if self.server:
            self.server.stop()

    # --- queueing updates -------------------------------------------------------------------------
    def push(self, update: dict[str, Any]) -> int:
        with self.lock:
            self._next_update += 1
            update = {"update_id": self._next_update, **update}
            self.updates.append(update)
            return self._next_update

    def reply(self, chat_id: int, to_message_id: int, text: str, username: str = "alice") -> int:
        """A user in `chat_id` replies to the bot's message `to_message_id`."""
        with self.lock:
            self._next_message += 1
            mid = self._next_message
        return self.push(
            {
                "message": {
                    "message_id": mid,
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private"},
                    "from": {"id": 42, "is_bot": False, "first_name": username.title(), "username": username},
                    "text": text,
                    "reply_to_message": {"message_id": to_message_id, "chat": {"id": chat_id, "type": "private"}},
                }
            }
        )

    def press(self, chat_id: int, message_id: int, data: str, username: str = "alice") -> int:
        """A user presses an inline button (callback data `data`) under the bot's message."""
        return self.push(
            {
                "callback_query": {
                    "id": f"cbq-{time.monotonic_ns()}",
                    "from": {"id": 42, "is_bot": False, "first_name": username.title(), "username": username},
                    "message": {"message_id": message_id, "chat": {"id": chat_id, "type": "private"}},
                    "chat_instance": "1",
                    "data": data,
                }
            }
        )

    def consumed(self, update_id: int) -> bool:
        """True once a getUpdates call confirmed `update_id` (asked with a higher offset)."""
        with self.lock:
            return any(o is not None and o > update_id for o in self.offsets)

    # --- what a test reads ------------------------------------------------------------------------
    def sent(self, chat_id: Any = None) -> list[Sent]:
        """Messages delivered (sendMessage answered ok), optionally to one chat; `.body`, `.message_id`."""
        with self.lock:
            return [
                c
                for c in self.calls
                if c.method == "sendMessage"
                and c.ok
                and (chat_id is None or str(c.body.get("chat_id")) == str(chat_id))
            ]

    def texts(self, chat_id: Any = None) -> list[str]:
        return [c.body.get("text", "") for c in self.sent(chat_id)]

    def attempts(self) -> list[Sent]:
        with self.lock:
            return [c for c in self.calls if c.method == "sendMessage"]

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [c.body for c in self.calls if c.method == method]
