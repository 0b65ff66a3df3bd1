"""Which gateway route a backend's model API goes through, and with which upstream, key and prices."""

from __future__ import annotations

import os

from factory.backends import AgentBackend
from factory.config import FactoryConfig
from factory.config_sections import ModelPrice
from factory.sandbox.gateway_openai import OPENAI_DEFAULT, OpenAIRoute

# OpenAI's list prices for gpt-5-codex (USD per million tokens), used when `backends.<name>.prices` is unset
DEFAULT_OPENAI_PRICE = ModelPrice(input_per_mtok=1.25, output_per_mtok=10.0, cached_input_per_mtok=0.125)


def openai_route(cfg: FactoryConfig, backend: AgentBackend) -> OpenAIRoute | None:
    """The run's OpenAI upstream (None for a backend on the Anthropic route).

    The key is Factory's own (`OPENAI_API_KEY` of the worker's environment or `.env`): the agent
    only ever sees the run's stand-in.
    """
    if backend.api != "openai":
        return None
    own = cfg.backends.get(backend.name)  # type: ignore[call-overload]
    key = cfg.openai_api_key.get_secret_value() if cfg.openai_api_key else os.environ.get("OPENAI_API_KEY")
    return OpenAIRoute(
        backend=backend.name,
        upstream=(own.base_url if own is not None and own.base_url else OPENAI_DEFAULT),
        api_key=key or None,
        price=(own.prices if own is not None and own.prices is not None else DEFAULT_OPENAI_PRICE),
    )
