"""Wire Plane, Telegram and GitHub into a worker's Runtime: notifiers, board forwarding, background loops."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("factory.integrations.setup")


def install_integrations(rt: Any) -> None:
    """Add the configured integrations to a `temporal.worker.Runtime` (called from `Runtime.create`).

    - Plane and Telegram notifiers go to `rt.notifiers` (each send is its own retried activity).
    - Board messages whose type is in `message_board.forward_types` are forwarded to Telegram.
    - Telegram long polling runs when a bot token is set, `telegram.polling` is on and no
      `telegram.webhook_secret` is set (then updates arrive at `POST /webhooks/telegram`).
    - Without `github.webhook_secret`, open Factory PRs are polled every `github.pr_poll_minutes`.
    """
    from factory.integrations.github.inbound import poll_pr_states
    from factory.integrations.plane.client import PlaneNotifier
    from factory.integrations.telegram.client import TelegramNotifier, poll_updates

    cfg = rt.cfg
    plane = PlaneNotifier(cfg, rt.engine, rt.http)
    if plane.client.configured:
        rt.notifiers.append(plane)
    telegram = TelegramNotifier(cfg, rt.engine, rt.http)
    if cfg.telegram_token:
        if telegram.configured:
            rt.notifiers.append(telegram)
        if cfg.message_board.telegram_forward:
            rt.board.listeners.append(telegram.forward_board_message)
        if cfg.telegram.polling and not cfg.telegram.webhook_secret:
            rt.background.append(
                asyncio.create_task(
                    poll_updates(cfg, rt.engine, rt.http, lambda: getattr(rt, "client", None)),
                    name="telegram-getUpdates",
                )
            )
    if not cfg.github.webhook_secret and cfg.github.pr_poll_minutes > 0:
        rt.background.append(asyncio.create_task(poll_pr_states(cfg, rt.engine, rt.http), name="pr-state-poll"))
