"""Which integrations a worker runs: Plane and Telegram notifiers, board forwarding, background loops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from factory.config import FactoryConfig
from factory.integrations.github.inbound import poll_pr_states
from factory.integrations.github.notifier import GitHubNotifier
from factory.integrations.plane.notifier import PlaneNotifier
from factory.integrations.telegram.inbound import poll_updates
from factory.integrations.telegram.notifier import TelegramNotifier
from factory.launcher import Launcher
from factory.store.tables import Message


@dataclass
class Integrations:
    """What the configured integrations add to a worker; the caller wires and runs it."""

    notifiers: list[PlaneNotifier | TelegramNotifier | GitHubNotifier] = field(default_factory=list)
    board_listeners: list[Callable[[Message], Awaitable[None]]] = field(default_factory=list)
    background: dict[str, Coroutine[Any, Any, None]] = field(default_factory=dict)  # task name -> loop


def build_integrations(
    cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient, get_launcher: Callable[[], Launcher | None]
) -> Integrations:
    """The integrations config.yml turns on.

    - Plane, Telegram and GitHub notifiers (each send is its own retried activity).
    - Board messages whose type is in `message_board.forward_types` are forwarded to Telegram.
    - Telegram long polling runs when a bot token is set, `telegram.polling` is on and no
      `telegram.webhook_secret` is set (then updates arrive at `POST /webhooks/telegram`);
      it answers through the launcher `get_launcher` returns once the worker is connected.
    - Without `github.webhook_secret`, open Factory PRs are polled every `github.pr_poll_minutes`.

    The background loops are returned as coroutines, not started: the caller owns their tasks.
    """
    out = Integrations()
    plane = PlaneNotifier(cfg, engine, http)
    if plane.client.configured:
        out.notifiers.append(plane)
    telegram = TelegramNotifier(cfg, engine, http)
    if cfg.telegram_token:
        if telegram.configured:
            out.notifiers.append(telegram)
        if cfg.message_board.telegram_forward:
            out.board_listeners.append(telegram.forward_board_message)
        if cfg.telegram.polling and not cfg.telegram.webhook_secret:
            out.background["telegram-getUpdates"] = poll_updates(cfg, engine, http, get_launcher)
    # it speaks only of issues and PRs Factory works on: status comments, check runs, thread replies
    out.notifiers.append(GitHubNotifier(cfg, engine, http))
    if not cfg.github.webhook_secret and cfg.github.pr_poll_minutes > 0:
        out.background["pr-state-poll"] = poll_pr_states(cfg, engine, http)
    return out
