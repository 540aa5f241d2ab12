"""One fixture per interface, parametrized over every backend: the contract suites."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scribeline.broker import Broker, open_broker
from scribeline.storage import Storage, open_storage

STORAGE_BACKENDS = ["sqlite"]
BROKER_BACKENDS = ["memory://"]


@pytest.fixture(params=STORAGE_BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    backend = await open_storage("", tmp_path)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(params=BROKER_BACKENDS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    backend = open_broker(request.param)
    try:
        yield backend
    finally:
        await backend.close()
