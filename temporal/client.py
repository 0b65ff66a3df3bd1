"""Connecting to Temporal, with Factory's data converter."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import CompositePayloadConverter, DataConverter

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


async def connect(cfg: FactoryConfig, address: str | None = None) -> Client:
    """Connect with Factory's data converter (dataclasses and datetimes round-trip)."""
    return await Client.connect(address or address_of(cfg), namespace=cfg.temporal.namespace, data_converter=data_converter)
