"""Access tokens (PROTOCOL section 5): minting with a key, and using them where keys work."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

from .helpers import (
    Api,
    ServerProcess,
    Tenant,
    assert_timestamp,
    expect_refusal,
    new_sid,
    open_live,
    read_until_seq,
    transcript,
)

POLL_DEADLINE = 15.0


async def _mint(api: Api, key: str | None = None, **body: Any) -> dict[str, Any]:
    resp = await api.request("POST", "/v1/tokens", json_body=body, key=key or api.key)
    assert resp.status == 201, f"mint: {resp.status} {resp.text}"
    assert isinstance(resp.body, dict)
    return resp.body


def _payload(token: str) -> dict[str, Any]:
    """The token's claims, read without verifying them."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(claims, dict)
    return claims


def _tampered(token: str, **changes: Any) -> str:
    """The token with its payload changed and the original signature kept."""
    header, _, signature = token.split(".")
    claims = {**_payload(token), **changes}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def _poll_until_refused(api: Api, token: str, path: str) -> None:
    """Poll a REST read with ``token`` until it answers 401, or fail at the deadline."""
    deadline = time.monotonic() + POLL_DEADLINE
    while True:
        resp = await api.request("GET", path, key=token)
        if resp.status == 401:
            assert resp.body["error"] == "authentication_failed"
            return
        assert resp.status == 200, f"{resp.status} {resp.text}"
        assert time.monotonic() < deadline, f"token still accepted after {POLL_DEADLINE} s"
        await asyncio.sleep(0.2)


async def test_mint_returns_a_bearer_token_with_its_expiry(api_a: Api) -> None:
    """A key mints a read token by default, valid for the default 600 s."""
    before = time.time()
    resp = await api_a.request("POST", "/v1/tokens")
    assert resp.status == 201, resp.text
    body = resp.body
    assert body["token_type"] == "Bearer"
    assert body["scopes"] == ["read"] and body["expires_in"] == 600
    assert body["call_sid"] is None and body["campaign_id"] is None
    assert_timestamp(body["expires_at"])
    assert body["token"].count(".") == 2 and not body["token"].startswith("scl_")
    assert resp.headers.get("Cache-Control") == "no-store"
    claims = _payload(body["token"])
    assert before + 595 <= claims["exp"] <= time.time() + 605


async def test_token_opens_the_live_stream_each_way(server: ServerProcess, api_a: Api) -> None:
    """A token works in the query, the Authorization header and the (echoed) subprotocol."""
    sid = new_sid()
    await api_a.create_call(sid)
    token = (await _mint(api_a))["token"]
    for method in ("query", "header", "subprotocol"):
        ws, snapshot = await open_live(server, sid, token, method=method)
        async with ws:
            if method == "subprotocol":
                assert ws.subprotocol == f"burki-token-{token}"
            assert snapshot["status"] == "in-progress"
            seq = await api_a.post_transcript(sid, transcript("via " + method))
            msgs = await read_until_seq(ws, seq)
            assert msgs[-1]["data"]["content"] == "via " + method


async def test_token_reads_a_call_over_rest(api_a: Api) -> None:
    """A read token can look up a call of its organization."""
    sid = new_sid()
    await api_a.create_call(sid)
    token = (await _mint(api_a))["token"]
    resp = await api_a.request("GET", f"/v1/calls/{sid}", key=token)
    assert resp.status == 200, resp.text
    assert resp.body["call_sid"] == sid


async def test_call_restricted_token_reaches_only_its_call(
    server: ServerProcess, api_a: Api
) -> None:
    """A token for call A opens A, but not call B (403 / forbidden) nor the call list."""
    sid_a, sid_b = new_sid(), new_sid()
    await api_a.create_call(sid_a)
    await api_a.create_call(sid_b)
    minted = await _mint(api_a, call_sid=sid_a)
    assert minted["call_sid"] == sid_a
    token = minted["token"]

    ws, _ = await open_live(server, sid_a, token)
    await ws.close()
    assert (await api_a.request("GET", f"/v1/calls/{sid_a}", key=token)).status == 200

    msg, _ = await expect_refusal(server, f"/live-transcript/{sid_b}", token)
    assert msg["error"] == "forbidden"
    resp = await api_a.request("GET", f"/v1/calls/{sid_b}", key=token)
    assert resp.status == 403 and resp.body["error"] == "forbidden"
    resp = await api_a.request("GET", "/v1/calls", key=token)
    assert resp.status == 403 and resp.body["error"] == "forbidden"


async def test_campaign_restricted_token_reaches_no_call(server: ServerProcess, api_a: Api) -> None:
    """A token restricted to a campaign cannot open a call stream."""
    sid = new_sid()
    await api_a.create_call(sid)
    minted = await _mint(api_a, campaign_id=1)
    assert minted["campaign_id"] == 1 and minted["call_sid"] is None
    msg, _ = await expect_refusal(server, f"/live-transcript/{sid}", minted["token"])
    assert msg["error"] == "forbidden"


async def test_scopes_are_those_minted(api_a: Api) -> None:
    """A read token cannot ingest; a write token minted from a read-write key can."""
    sid = new_sid()
    await api_a.create_call(sid)
    read = (await _mint(api_a))["token"]
    resp = await api_a.request(
        "POST", f"/v1/calls/{sid}/transcripts", json_body=transcript(), key=read
    )
    assert resp.status == 403 and resp.body["error"] == "forbidden"
    write = (await _mint(api_a, scopes=["write"], call_sid=sid))["token"]
    resp = await api_a.request(
        "POST", f"/v1/calls/{sid}/transcripts", json_body=transcript(), key=write
    )
    assert resp.status == 201, resp.text


async def test_scopes_beyond_the_key_are_forbidden(api_a: Api, tenant_a: Tenant) -> None:
    """A read key cannot mint a write token, nor a read-write key an admin one."""
    resp = await api_a.request(
        "POST", "/v1/tokens", json_body={"scopes": ["write"]}, key=tenant_a.read
    )
    assert resp.status == 403 and resp.body["error"] == "forbidden"
    resp = await api_a.request("POST", "/v1/tokens", json_body={"scopes": ["read", "admin"]})
    assert resp.status == 403 and resp.body["error"] == "forbidden"


async def test_invalid_requests_are_refused(api_a: Api) -> None:
    """Over-long lifetimes, two restrictions, unknown fields or scopes, and bad JSON are 4xx."""
    for body in (
        {"expires_in": 86_401},
        {"expires_in": 0},
        {"expires_in": "60"},
        {"call_sid": new_sid(), "campaign_id": 1},
        {"call_sid": "not a sid"},
        {"scopes": []},
        {"scopes": ["delete"]},
        {"audience": "x"},
        [],
    ):
        resp = await api_a.request("POST", "/v1/tokens", json_body=body)
        assert resp.status == 422, f"{body}: {resp.status} {resp.text}"
        assert resp.body["error"] == "invalid_request"
    resp = await api_a.request("POST", "/v1/tokens", data=b"{", headers={})
    assert resp.status == 400 and resp.body["error"] == "invalid_json"
    ok = await _mint(api_a, expires_in=86_400)
    assert ok["expires_in"] == 86_400


async def test_a_token_cannot_mint_a_token(api_a: Api) -> None:
    """Minting needs an API key: an access token gets 403, no credential at all 401."""
    token = (await _mint(api_a))["token"]
    resp = await api_a.request("POST", "/v1/tokens", key=token)
    assert resp.status == 403 and resp.body["error"] == "forbidden"
    resp = await api_a.request("POST", "/v1/tokens", key=None)
    assert resp.status == 401 and resp.body["error"] == "authentication_failed"


async def test_tampered_token_is_refused(server: ServerProcess, api_a: Api) -> None:
    """A token whose payload was altered fails: authentication_failed + 1008, and 401."""
    sid = new_sid()
    await api_a.create_call(sid)
    minted = await _mint(api_a, call_sid=new_sid())
    forged = _tampered(minted["token"], call_sid=sid)
    msg, _ = await expect_refusal(server, f"/live-transcript/{sid}", forged, method="subprotocol")
    assert msg["error"] == "authentication_failed"
    assert msg["message"] == "Authentication failed"
    resp = await api_a.request("GET", f"/v1/calls/{sid}", key=forged)
    assert resp.status == 401 and resp.body["error"] == "authentication_failed"


async def test_another_organizations_token_sees_nothing(
    server: ServerProcess, api_a: Api, api_b: Api
) -> None:
    """A token of organization B gets not_found for organization A's call."""
    sid = new_sid()
    await api_a.create_call(sid)
    token_b = (await _mint(api_b))["token"]
    msg, _ = await expect_refusal(server, f"/live-transcript/{sid}", token_b)
    assert msg["error"] == "not_found"
    assert (await api_a.request("GET", f"/v1/calls/{sid}", key=token_b)).status == 404


async def test_revoking_the_key_stops_its_tokens(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """After `scribeline keys revoke`, tokens minted from the key fail within the cache time."""
    sid = new_sid()
    await api_a.create_call(sid)
    key = server.create_key(tenant_a.org, "read")
    token = (await _mint(api_a, key=key))["token"]
    assert (await api_a.request("GET", f"/v1/calls/{sid}", key=token)).status == 200
    server.cli("keys", "revoke", key[:12])
    await _poll_until_refused(api_a, token, f"/v1/calls/{sid}")
    msg, _ = await expect_refusal(server, f"/live-transcript/{sid}", token)
    assert msg["error"] == "authentication_failed"


async def test_expired_token_is_refused(server: ServerProcess, api_a: Api) -> None:
    """A token past its expiry (and the few seconds of clock leeway) is refused."""
    sid = new_sid()
    await api_a.create_call(sid)
    minted = await _mint(api_a, expires_in=1)
    assert minted["expires_in"] == 1
    await _poll_until_refused(api_a, minted["token"], f"/v1/calls/{sid}")
    msg, _ = await expect_refusal(server, f"/live-transcript/{sid}", minted["token"])
    assert msg["error"] == "authentication_failed"
