"""Live transcript stream: authentication and access control (PROTOCOL section 1)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from .helpers import (
    Api,
    ServerProcess,
    Tenant,
    connect_live,
    expect_close,
    expect_refusal,
    new_sid,
    open_live,
    read_until_seq,
    recv_json,
    transcript,
)

BAD_KEY = "scl_" + "A" * 43
ERROR_KEYS = {"type", "call_sid", "timestamp", "error", "message"}


def _normalized(msg: dict[str, Any], sid: str) -> dict[str, Any]:
    """The refusal without its timestamp and with the SID replaced, for comparison."""
    return {
        k: (v.replace(sid, "<SID>") if isinstance(v, str) else v)
        for k, v in msg.items()
        if k != "timestamp"
    }


@pytest.mark.parametrize("method", ["query", "header", "subprotocol"])
async def test_each_auth_method_opens_the_stream(
    server: ServerProcess, tenant_a: Tenant, api_a: Api, method: str
) -> None:
    """An API key in the query, the Authorization header or the subprotocol opens the stream."""
    sid = new_sid()
    await api_a.create_call(sid)
    ws, snapshot = await open_live(server, sid, tenant_a.read, method=method)
    async with ws:
        if method == "subprotocol":
            assert ws.subprotocol == f"burki-token-{tenant_a.read}"
        assert snapshot["status"] == "in-progress"
        seq = await api_a.post_transcript(sid, transcript("via " + method))
        msgs = await read_until_seq(ws, seq)
        assert msgs[-1]["data"]["content"] == "via " + method


async def test_subprotocol_is_echoed_even_when_the_key_is_refused(server: ServerProcess) -> None:
    """A bad key sent as a subprotocol still gets it echoed, so a browser can read the error."""
    sid = new_sid()
    msg, ws = await expect_refusal(server, f"/live-transcript/{sid}", BAD_KEY, method="subprotocol")
    assert ws.subprotocol == f"burki-token-{BAD_KEY}"
    assert msg["error"] == "authentication_failed"


@pytest.mark.parametrize("method", ["query", "header", "subprotocol"])
async def test_unknown_key_is_refused(server: ServerProcess, api_a: Api, method: str) -> None:
    """An unknown key gets authentication_failed and close 1008, whatever the auth method."""
    sid = new_sid()
    await api_a.create_call(sid)
    msg, _ = await expect_refusal(server, f"/live-transcript/{sid}", BAD_KEY, method=method)
    assert msg["error"] == "authentication_failed"
    assert msg["message"] == "Authentication failed"
    assert msg["call_sid"] == sid
    assert set(msg) >= ERROR_KEYS


async def test_missing_token_is_refused(server: ServerProcess, api_a: Api) -> None:
    """A connection with no token at all gets authentication_failed and close 1008."""
    sid = new_sid()
    await api_a.create_call(sid)
    msg, _ = await expect_refusal(server, f"/live-transcript/{sid}", None)
    assert msg["error"] == "authentication_failed"


async def test_write_only_key_cannot_read_a_stream(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A key without the read scope is refused with one error and close 1008."""
    sid = new_sid()
    await api_a.create_call(sid)
    msg, _ = await expect_refusal(server, f"/live-transcript/{sid}", tenant_a.write)
    assert msg["error"] in {"authentication_failed", "forbidden"}


async def test_foreign_and_missing_calls_get_the_same_answer(
    server: ServerProcess, tenant_a: Tenant, tenant_b: Tenant, api_a: Api
) -> None:
    """Another organization's call and a missing call are refused identically, so SIDs can't be
    probed."""
    foreign_sid = new_sid()
    await api_a.create_call(foreign_sid)
    missing_sid = new_sid()
    bad_key_sid = new_sid()

    foreign, _ = await expect_refusal(server, f"/live-transcript/{foreign_sid}", tenant_b.rw)
    missing, _ = await expect_refusal(server, f"/live-transcript/{missing_sid}", tenant_b.rw)
    bad_key, _ = await expect_refusal(server, f"/live-transcript/{bad_key_sid}", BAD_KEY)

    assert foreign["error"] == "not_found"
    assert missing["error"] == "not_found"
    assert missing["message"] == f"Call {missing_sid} not found"
    assert foreign["message"] == missing["message"].replace(missing_sid, foreign_sid)
    assert _normalized(foreign, foreign_sid) == _normalized(missing, missing_sid)
    assert foreign["call_sid"] == foreign_sid
    assert set(foreign) == set(missing) == set(bad_key)
    assert set(foreign) >= ERROR_KEYS

    # The owner still reaches it, so the refusal above really was about the organization.
    ws, _ = await open_live(server, foreign_sid, tenant_a.read)
    await ws.close()


@pytest.mark.parametrize("bad_sid", ["A" * 65, "bad$sid", "bad%20sid", "bad,sid"])
async def test_invalid_call_sid_is_refused(
    server: ServerProcess, tenant_a: Tenant, bad_sid: str
) -> None:
    """A call SID outside 1-64 characters of [A-Za-z0-9_.:-] gets invalid_call_sid and 1008."""
    msg, _ = await expect_refusal(server, f"/live-transcript/{bad_sid}", tenant_a.read)
    assert msg["error"] == "invalid_call_sid"
    assert msg["message"] == "Invalid call SID"
    assert set(msg) >= ERROR_KEYS


async def test_longest_valid_call_sid_uses_the_whole_alphabet(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A 64-character SID using every allowed character class is valid end to end."""
    sid = ("Az09_.:-" * 8)[:60] + new_sid()[-4:]
    assert len(sid) == 64
    msg, _ = await expect_refusal(server, f"/live-transcript/{sid}", tenant_a.read)
    assert msg["error"] == "not_found", "a valid SID that does not exist is not_found"
    await api_a.create_call(sid)
    ws, snapshot = await open_live(server, sid, tenant_a.read)
    async with ws:
        assert snapshot["call_sid"] == sid


async def _open_ok(server: ServerProcess, sid: str, key: str) -> ClientConnection:
    ws, _ = await open_live(server, sid, key)
    return ws


async def test_eleventh_connection_is_rate_limited(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """With 10 connections open on a call the 11th is refused with rate_limited; closing one frees a
    slot."""
    sid = new_sid()
    await api_a.create_call(sid)
    other_sid = new_sid()
    await api_a.create_call(other_sid)
    conns = list(await asyncio.gather(*(_open_ok(server, sid, tenant_a.read) for _ in range(10))))
    try:
        msg, _ = await expect_refusal(server, f"/live-transcript/{sid}", tenant_a.read)
        assert msg["error"] == "rate_limited"
        assert msg["message"] == "Connection limit reached for this call"
        assert msg["call_sid"] == sid
        assert set(msg) >= ERROR_KEYS

        # The limit is per call: another call of the same organization still opens.
        other = await _open_ok(server, other_sid, tenant_a.read)
        await other.close()

        # The ten open connections still work.
        seq = await api_a.post_transcript(sid, transcript("still here"))
        for ws in conns:
            assert (await read_until_seq(ws, seq))[-1]["seq"] == seq

        # Once one closes, a new connection gets in (the server may need a moment to
        # notice the close, so retry until a deadline).
        await conns.pop().close()
        deadline = time.monotonic() + 5
        while True:
            ws = await connect_live(server, sid, tenant_a.read)
            first = await recv_json(ws)
            if first.get("type") == "connection_established":
                conns.append(ws)
                break
            await ws.close()
            assert first.get("error") == "rate_limited", first
            assert time.monotonic() < deadline, "a freed slot was not reusable within 5 s"
            await asyncio.sleep(0.05)
    finally:
        for ws in conns:
            with contextlib.suppress(Exception):
                await ws.close()


async def test_revoked_key_is_refused_on_streams_and_rest(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """A key revoked with the admin CLI stops opening streams and REST calls within seconds."""
    sid = new_sid()
    await api_a.create_call(sid)
    key = await asyncio.to_thread(server.create_key, tenant_a.org, "read")
    ws, _ = await open_live(server, sid, key)
    await ws.close()
    assert (await api_a.request("GET", f"/v1/calls/{sid}", key=key)).status == 200

    await asyncio.to_thread(server.cli, "keys", "revoke", key[:12])

    # Servers may cache valid keys briefly; the refusal must come within a few seconds.
    deadline = time.monotonic() + 10
    while True:
        ws = await connect_live(server, sid, key)
        first = await recv_json(ws)
        if first["type"] == "error":
            assert first["error"] == "authentication_failed", first
            assert await expect_close(ws) == 1008
            break
        await ws.close()
        assert time.monotonic() < deadline, "a revoked key still opens streams after 10 s"
        await asyncio.sleep(0.2)
    resp = await api_a.request("GET", f"/v1/calls/{sid}", key=key)
    assert resp.status == 401 and resp.body["error"] == "authentication_failed", resp.text


async def test_concurrent_connects_admit_exactly_the_limit_and_aborts_free_slots(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """Of 15 simultaneous connects exactly 10 get in; slots of aborted TCP connections free up."""
    sid = new_sid()
    await api_a.create_call(sid)

    async def attempt() -> tuple[ClientConnection, dict[str, Any]]:
        ws = await connect_live(server, sid, tenant_a.read)
        return ws, await recv_json(ws)

    results = await asyncio.gather(*(attempt() for _ in range(15)))
    admitted = [ws for ws, first in results if first["type"] == "connection_established"]
    refused = [first for _, first in results if first["type"] == "error"]
    try:
        assert len(admitted) == 10, f"{len(admitted)} of 15 admitted; the limit is 10"
        assert [r["error"] for r in refused] == ["rate_limited"] * 5
    finally:
        for ws, _ in results:
            if ws not in admitted:
                await ws.close()

    # Kill the admitted connections without a closing handshake; the server must notice
    # and give the slots back.
    for ws in admitted:
        ws.transport.abort()
    reopened: list[ClientConnection] = []
    deadline = time.monotonic() + 10
    try:
        while len(reopened) < 10:
            ws, first = await attempt()
            if first["type"] == "connection_established":
                reopened.append(ws)
                continue
            await ws.close()
            assert first["error"] == "rate_limited", first
            assert time.monotonic() < deadline, f"only {len(reopened)} slots freed after 10 s"
            await asyncio.sleep(0.05)
        msg, _ = await expect_refusal(server, f"/live-transcript/{sid}", tenant_a.read)
        assert msg["error"] == "rate_limited"
    finally:
        for ws in reopened:
            await ws.close()
