"""The ``broker`` fixture: every broker backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from scribeline.broker import Broker, open_broker

__all__ = ["BROKER_BACKENDS", "broker"]

BROKER_BACKENDS = ["memory://"]


@pytest.fixture(params=BROKER_BACKENDS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    backend = open_broker(request.param)
    try:
        yield backend
    finally:
        await backend.close()
