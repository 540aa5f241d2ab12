"""The ``storage`` fixture: every storage backend, each test on a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scribeline.storage import Storage, open_storage

__all__ = ["STORAGE_BACKENDS", "storage"]

STORAGE_BACKENDS = ["sqlite"]


@pytest.fixture(params=STORAGE_BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    backend = await open_storage("", tmp_path)
    try:
        yield backend
    finally:
        await backend.close()
