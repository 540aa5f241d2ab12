"""The ``storage`` fixture: every storage backend, each test on a fresh database.

``storage_url`` is the URL of a fresh, empty database of the backend: a file
under the test's temporary directory for SQLite, a new database on the
session's PostgreSQL (the ``postgres`` fixture) for PostgreSQL. Tests that
reopen a store use it; the others take ``storage``, already open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scribeline.storage import Storage, open_storage

__all__ = ["STORAGE_BACKENDS", "storage", "storage_url"]

STORAGE_BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scribeline.db'}"
    server = request.getfixturevalue("postgres")
    url: str = server.create_database()
    return url


@pytest.fixture
async def storage(storage_url: str, tmp_path: Path) -> AsyncIterator[Storage]:
    backend = await open_storage(storage_url, tmp_path)
    try:
        yield backend
    finally:
        await backend.close()
