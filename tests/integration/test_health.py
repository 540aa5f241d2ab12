"""Health endpoints (DESIGN: Observability)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp

from .helpers import Api, running_server


async def test_healthz_reports_ok_without_auth(api_a: Api) -> None:
    """GET /healthz answers 200 {"status":"ok"} and needs no API key."""
    resp = await api_a.request("GET", "/healthz", key=None)
    assert resp.status == 200, resp.text
    assert resp.body == {"status": "ok"}


async def test_readyz_reports_ready_when_storage_and_broker_are_up(api_a: Api) -> None:
    """GET /readyz answers 200 on a running server whose storage and broker are reachable."""
    resp = await api_a.request("GET", "/readyz", key=None)
    assert resp.status == 200, resp.text


async def test_readyz_fails_while_writes_cannot_complete(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """While another process holds the database's write lock, appends cannot complete:
    /readyz says so (503, storage timed out) instead of answering from a read, and
    is ready again once the lock is gone."""
    env = {"SCRIBELINE_READINESS_TIMEOUT": "0.5"}
    with running_server(tmp_path / "data", env) as server:
        api = Api(http, server, None)
        assert (await api.request("GET", "/readyz")).status == 200
        blocker = sqlite3.connect(server.data_dir / "scribeline.db", isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # SQLite has one writer at a time
            resp = await api.request("GET", "/readyz")
            assert resp.status == 503, resp.text
            assert resp.body["checks"]["storage"] == "unavailable: timed out"
            assert resp.body["checks"]["broker"] == "ok"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        resp = await api.request("GET", "/readyz")
        assert resp.status == 200, resp.text
