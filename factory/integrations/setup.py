"""Which integrations a worker runs: Plane, Telegram and GitHub notifiers, and board forwarding."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from sqlalchemy.engine import Engine

from factory.config import FactoryConfig
from factory.integrations.github.notifier import GitHubNotifier
from factory.integrations.plane.notifier import PlaneNotifier
from factory.integrations.telegram.notifier import TelegramNotifier
from factory.store.tables import Message


@dataclass
class Integrations:
    """What the configured integrations add to a worker; the caller wires and runs it."""

    notifiers: list[PlaneNotifier | TelegramNotifier | GitHubNotifier] = field(default_factory=list)
    board_listeners: list[Callable[[Message], Awaitable[None]]] = field(default_factory=list)


def build_integrations(cfg: FactoryConfig, engine: Engine, http: httpx.AsyncClient) -> Integrations:
    """The integrations config.yml turns on.

    - Plane, Telegram and GitHub notifiers (each send is its own retried activity).
    - Board messages whose type is in `message_board.forward_types` are forwarded to Telegram.

    Telegram long polling and the PR poll are not here: they run once per cluster, as Temporal
    workflows with fixed ids (temporal/singletons.py).
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
    # it speaks only of issues and PRs Factory works on: status comments, check runs, thread replies
    out.notifiers.append(GitHubNotifier(cfg, engine, http))
    return out
