"""Health endpoints (DESIGN: Observability)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiohttp

from .helpers import Api, Response, running_server


async def test_healthz_reports_ok_without_auth(api_a: Api) -> None:
    """GET /healthz answers 200 {"status":"ok"} and needs no API key."""
    resp = await api_a.request("GET", "/healthz", key=None)
    assert resp.status == 200, resp.text
    assert resp.body == {"status": "ok"}


async def test_readyz_reports_ready_when_storage_and_broker_are_up(api_a: Api) -> None:
    """GET /readyz answers 200 on a running server whose storage and broker are reachable."""
    resp = await api_a.request("GET", "/readyz", key=None)
    assert resp.status == 200, resp.text


async def _readyz_until(api: Api, status: int, within: float = 10.0) -> Response:
    """Ask /readyz until it answers ``status`` (its result is cached for a second)."""
    deadline = time.monotonic() + within
    while True:
        resp = await api.request("GET", "/readyz")
        if resp.status == status or time.monotonic() > deadline:
            return resp
        await asyncio.sleep(0.2)  # polling the condition, within a deadline


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
            resp = await _readyz_until(api, 503)
            assert resp.status == 503, resp.text
            assert resp.body["checks"]["storage"] == "unavailable: timed out"
            assert resp.body["checks"]["broker"] == "ok"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        resp = await _readyz_until(api, 200)
        assert resp.status == 200, resp.text
