"""The Plane and Telegram stand-ins, one per test (registered as a plugin in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.plane import FakePlane
from tests.fakes.telegram import FakeTelegram


@pytest.fixture
def plane() -> Iterator[FakePlane]:
    p = FakePlane()
    p.start()
    yield p
    p.stop()


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    t = FakeTelegram()
    t.start()
    yield t
    t.stop()
