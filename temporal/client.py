"""Connecting to Temporal."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from factory.config import FactoryConfig

DEFAULT_ADDRESS = "127.0.0.1:7233"


def address_of(cfg: FactoryConfig) -> str:
    return cfg.temporal.address or DEFAULT_ADDRESS


async def connect(cfg: FactoryConfig, address: str | None = None) -> Client:
    """Connect with the pydantic data converter (dataclasses and datetimes round-trip)."""
    return await Client.connect(
        address or address_of(cfg), namespace=cfg.temporal.namespace, data_converter=pydantic_data_converter
    )
