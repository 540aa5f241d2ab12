"""Numbers and types are parsed strictly: bad input is the client's error, never 5xx.

Non-ASCII digits (``²`` passes ``str.isdigit()`` but not ``int()``),
integers past 64 bits and values of the wrong JSON type each get a 4xx (or
``invalid_request``/``not_found`` and close 1008 on a WebSocket) instead of
a 500 or 1011 with a traceback.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .helpers import (
    Api,
    ServerProcess,
    Tenant,
    connect_live,
    new_sid,
    recv_json,
    transcript,
)

BIG = 2**70  # orjson reads it as a float; as an id it fits no column
JUST_PAST_64_BITS = 2**63


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/campaigns/²", 404),
        ("GET", "/v1/campaigns/99999999999999999999999", 404),
        ("GET", "/v1/campaigns/0", 404),
        ("GET", "/v1/campaigns/+1", 404),
        ("POST", "/v1/campaigns/1/contacts/²/outcome", 404),
        ("PATCH", "/v1/assistants/²", 404),
        ("GET", "/v1/calls?limit=²", 422),
        ("GET", "/v1/calls?limit=٣", 422),
        ("GET", "/v1/calls?cursor=²", 422),
        ("GET", "/v1/calls?cursor=99999999999999999999999", 422),
        ("GET", "/v1/bots?limit=²", 422),
    ],
)
async def test_numbers_in_paths_and_queries(
    api_a: Api, method: str, path: str, status: int
) -> None:
    """Path ids that cannot exist are not found; bad page parameters are invalid."""
    body: Any = {"transcription_enabled": True} if method == "PATCH" else {"outcome": "success"}
    resp = await api_a.request(method, path, json_body=body)
    assert resp.status == status, resp.text
    assert resp.body["error"] == ("not_found" if status == 404 else "invalid_request")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/calls", {"assistant_id": BIG}),
        ("/v1/calls", {"assistant_id": JUST_PAST_64_BITS}),
        ("/v1/calls", {"campaign_contact_id": JUST_PAST_64_BITS}),
        ("/v1/calls", {"assistant_id": "1"}),
        ("/v1/calls", {"assistant_id": 1.0}),
        ("/v1/calls", {"assistant_id": True}),
        ("/v1/campaigns", {"name": "x", "assistant_id": BIG}),
        ("/v1/tokens", {"campaign_id": JUST_PAST_64_BITS}),
        ("/v1/tokens", {"expires_in": BIG}),
        ("/v1/tokens", {"expires_in": "60"}),
        ("/v1/assistants", {"name": "x", "transcription_enabled": "yes"}),
    ],
)
async def test_json_ids_and_types_are_strict(api_a: Api, path: str, body: dict[str, Any]) -> None:
    """A JSON id past 64 bits, or a value of the wrong type, is a 422."""
    if path == "/v1/calls":
        body = {"call_sid": new_sid(), **body}
    resp = await api_a.request("POST", path, json_body=body)
    assert resp.status == 422, resp.text
    assert resp.body["error"] == "invalid_request"


@pytest.mark.parametrize(
    "fields",
    [
        {"is_final": "yes"},
        {"is_final": 1},
        {"confidence": "0.5"},
        {"segment_start": "1.5"},
        {"speaker": 1},
        {"content": 5},
    ],
)
async def test_transcript_fields_are_not_coerced(api_a: Api, fields: dict[str, Any]) -> None:
    """``"yes"`` is not true, ``1`` is not true, ``"0.5"`` is not a number."""
    sid = new_sid()
    await api_a.create_call(sid)
    resp = await api_a.request(
        "POST", f"/v1/calls/{sid}/transcripts", json_body={**transcript(), **fields}
    )
    assert resp.status == 422, resp.text


async def test_a_whole_number_is_a_number(api_a: Api) -> None:
    """Where a number is expected an integer is fine (``1`` for ``1.0``)."""
    sid = new_sid()
    await api_a.create_call(sid)
    body = {**transcript(), "confidence": 1, "segment_start": 0, "segment_end": 2}
    resp = await api_a.request("POST", f"/v1/calls/{sid}/transcripts", json_body=body)
    assert resp.status == 201, resp.text


async def _refused(ws: Any) -> tuple[dict[str, Any], int, str]:
    message = await recv_json(ws)
    try:
        await ws.recv()
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return message, exc.rcvd.code, exc.rcvd.reason
    raise AssertionError("the stream was not closed")


async def test_websocket_numbers_are_refused_as_the_client_s_error(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """``?since=²`` is ``invalid_request`` and ``/ws/campaigns/²/progress`` is
    ``not_found``, each an error message and close 1008 whose reason is the code."""
    sid = new_sid()
    await api_a.create_call(sid)
    for since in ("²", "-1", "99999999999999999999999"):
        ws = await connect_live(server, sid, tenant_a.read, since=since)  # type: ignore[arg-type]
        async with ws:
            message, code, reason = await _refused(ws)
        assert (message["error"], code, reason) == ("invalid_request", 1008, "invalid_request")

    for raw in ("²", "1²", "99999999999999999999999"):
        url = f"{server.ws_base}/ws/campaigns/{raw}/progress?token={tenant_a.read}"
        async with await connect(url, ping_interval=None) as ws:
            message, code, reason = await _refused(ws)
        assert (message["error"], code, reason) == ("not_found", 1008, "not_found")
