"""Health endpoints (DESIGN: Observability)."""

from __future__ import annotations

from .helpers import Api


async def test_healthz_reports_ok_without_auth(api_a: Api) -> None:
    """GET /healthz answers 200 {"status":"ok"} and needs no API key."""
    resp = await api_a.request("GET", "/healthz", key=None)
    assert resp.status == 200, resp.text
    assert resp.body == {"status": "ok"}


async def test_readyz_reports_ready_when_storage_and_broker_are_up(api_a: Api) -> None:
    """GET /readyz answers 200 on a running server whose storage and broker are reachable."""
    resp = await api_a.request("GET", "/readyz", key=None)
    assert resp.status == 200, resp.text
