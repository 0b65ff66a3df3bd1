"""Connecting to Temporal, with Factory's data converter."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import CompositePayloadConverter, DataConverter
from temporalio.service import TLSConfig

from factory.config import FactoryConfig

DEFAULT_ADDRESS = "127.0.0.1:7233"

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
