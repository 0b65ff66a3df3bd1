"""Connecting to Temporal, with Factory's data converter, and waiting at start for it to be healthy."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from typing import Any

from pydantic import TypeAdapter
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import CompositePayloadConverter, DataConverter
from temporalio.service import RPCError, TLSConfig

from factory.config import FactoryConfig

DEFAULT_ADDRESS = "127.0.0.1:7233"
log = logging.getLogger("factory.temporal")

# One TypeAdapter per type for the whole process. The stock pydantic converter keeps its cache
# per converter instance, and every workflow run gets a fresh converter, so it rebuilt the
# schemas of TaskInput, AgentRequest, ... (4-22 ms each) for every task (see bench/PIPELINE.md).
_type_adapter = functools.lru_cache(maxsize=1024)(TypeAdapter)


class _SharedCacheJSONConverter(PydanticJSONPlainPayloadConverter):
    def __init__(self) -> None:
        super().__init__()
        self._type_adapter = _type_adapter

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._type_adapter = _type_adapter


class FactoryPayloadConverter(CompositePayloadConverter):
    """Pydantic JSON for dataclasses, datetimes and models, with a process-wide schema cache."""

    def __init__(self) -> None:
        json = _SharedCacheJSONConverter()
        stock = PydanticPayloadConverter()
        super().__init__(
            *(json if isinstance(c, PydanticJSONPlainPayloadConverter) else c for c in stock.converters.values())
        )


data_converter = DataConverter(payload_converter_class=FactoryPayloadConverter)


def address_of(cfg: FactoryConfig) -> str:
    return cfg.temporal.address or DEFAULT_ADDRESS


def tls_of(cfg: FactoryConfig) -> TLSConfig | bool:
    """The TLS settings of `temporal:` (False: plain gRPC, as the dev server speaks)."""
    t = cfg.temporal
    if not (t.tls or t.tls_cert_file or t.tls_ca_file or cfg.temporal_api_key):
        return False

    def read(path: str | None) -> bytes | None:
        return cfg.path(path).read_bytes() if path else None

    return TLSConfig(
        client_cert=read(t.tls_cert_file),
        client_private_key=read(t.tls_key_file),
        server_root_ca_cert=read(t.tls_ca_file),
        domain=t.tls_server_name,
    )


async def connect(cfg: FactoryConfig, address: str | None = None) -> Client:
    """Connect with Factory's data converter (dataclasses and datetimes round-trip), TLS and API key."""
    key = cfg.temporal_api_key.get_secret_value() if cfg.temporal_api_key else None
    return await Client.connect(
        address or address_of(cfg),
        namespace=cfg.temporal.namespace,
        data_converter=data_converter,
        tls=tls_of(cfg),
        api_key=key,
    )


class TemporalUnavailable(RuntimeError):
    """Temporal did not become reachable and healthy within `temporal.connect_timeout_seconds`."""


def _reason(exc: BaseException) -> str:
    """Why one attempt failed, in a few words (the SDK's own text can run to several lines of Rust debug output)."""
    text = str(exc)
    if isinstance(exc, TimeoutError):
        return "no answer yet"
    if "not healthy" in text.lower():
        return "frontend not healthy yet"
    if "refused" in text.lower():
        return "nothing listens there yet"
    return (text.splitlines() or [type(exc).__name__])[0][:200]


async def wait_for_temporal(
    cfg: FactoryConfig, address: str | None = None, timeout: float | None = None, attempt_timeout: float = 10
) -> Client:
    """Connect once Temporal answers and says it is healthy; every Factory process starts with this.

    A port that is open is not enough: a dev server that is still starting (or a loaded one) refuses
    calls with "Frontend is not healthy yet". So: retry, each attempt bounded (a listener that never
    speaks gRPC would otherwise hold a connect forever), saying every few seconds what it waits for,
    until `timeout` (default `temporal.connect_timeout_seconds`); then TemporalUnavailable naming why.
    Cancelling it (a Ctrl-C while waiting) stops at once.
    """
    address = address or address_of(cfg)
    timeout = cfg.temporal.connect_timeout_seconds if timeout is None else timeout
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    said, attempt = -math.inf, 0
    while True:
        attempt += 1
        # short attempts first, so that the wait is reported early; longer ones for a slow, loaded server
        bound = max(0.1, min(2.0 * attempt, attempt_timeout, deadline - loop.time()))
        try:
            client = await asyncio.wait_for(connect(cfg, address), bound)
            try:
                healthy = await asyncio.wait_for(client.service_client.check_health(), bound)
            except RPCError as exc:  # a server without the gRPC health service: the connect's own call answered
                healthy = "unimplemented" in str(exc.status).lower()
                if not healthy:
                    raise
            if healthy:
                return client
            reason = "frontend not healthy yet"
        except (RuntimeError, RPCError, TimeoutError, OSError) as exc:
            reason = _reason(exc)
        now = loop.time()
        if now >= deadline:
            raise TemporalUnavailable(f"Temporal at {address} is not reachable and healthy in {timeout:g} s ({reason})")
        if now - said >= 4:
            log.warning("waiting for Temporal at %s (%s)", address, reason)
            said = now
        await asyncio.sleep(min(0.5, deadline - now))
