"""Text with NUL (``\\u0000``) is the client's error on every backend.

PostgreSQL's text columns cannot hold NUL: such a name, phone number or
segment id used to be stored by SQLite and an internal error (500) on
PostgreSQL, and so was a look-up of a call SID or bot id with NUL in the
path. Now bodies are refused with 422 naming the field, and such ids are
simply not found, on PostgreSQL as on SQLite. The same holds for the
WebSockets: their paths, and what the producers send.
(``tests/unit/test_text_fields.py`` checks that every text field refuses NUL.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.services import Postgres

from .bot_helpers import open_url, produce
from .helpers import (
    ServerProcess,
    connect_ingest,
    expect_refusal,
    new_sid,
    recv_json,
    running_server,
    send_json,
)

NUL = "a\x00b"
BOT = {"meeting_url": "https://meet.example.com/a", "transcription_model": "realtime"}


@pytest.fixture(scope="module")
def pg_server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    env = {"SCRIBELINE_DATABASE_URL": postgres.create_database()}
    with running_server(tmp_path_factory.mktemp("nul") / "data", env) as server:
        server.cli("orgs", "create", "nul")
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {server.create_key('nul', 'admin')}"
            yield server, session


def _url(server: ServerProcess, path: str) -> str:
    return f"{server.base_url}{path}"


def test_nul_in_a_body_is_422_naming_the_field(pg_server: Any) -> None:
    """Each text field that reaches a text column refuses NUL, and nothing is stored."""
    server, session = pg_server
    sid = new_sid()
    assert session.post(_url(server, "/v1/calls"), json={"call_sid": sid}).status_code == 201
    campaign = session.post(_url(server, "/v1/campaigns"), json={"name": "c"}).json()["id"]
    cases: list[tuple[str, Any, str]] = [
        ("/v1/assistants", {"name": NUL}, "name"),
        ("/v1/calls", {"call_sid": new_sid(), "to_phone_number": NUL}, "to_phone_number"),
        ("/v1/campaigns", {"name": NUL}, "name"),
        (f"/v1/campaigns/{campaign}/contacts", {"phone_number": NUL}, "phone_number"),
        (f"/v1/calls/{sid}/transcripts", {"content": "x", "speaker": "user", "segment_id": NUL},
         "segment_id"),
        (f"/v1/calls/{sid}/transcripts", {"content": NUL, "speaker": "user"}, "content"),
        ("/v1/bots", {**BOT, "bot_name": NUL}, "bot_name"),
    ]  # fmt: skip
    for path, body, field in cases:
        response = session.post(_url(server, path), json=body)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["details"][0]["loc"] == [field]
    call = session.get(_url(server, f"/v1/calls/{sid}")).json()
    assert call["transcript"] == []


@pytest.mark.parametrize("path", ["/v1/calls/a%00b", "/v1/bots/a%00b", "/v1/bots/a%00b/events"])
def test_nul_in_an_id_is_not_found(pg_server: Any, path: str) -> None:
    """A call SID or bot id with NUL in the path is not found, not an internal error."""
    server, session = pg_server
    response = session.get(_url(server, path))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def _key(session: requests.Session) -> str:
    return str(session.headers["Authorization"]).removeprefix("Bearer ")


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/live-transcript/a%00b", "invalid_call_sid"),
        ("/v1/ingest/a%00b", "invalid_call_sid"),
        ("/v1/bots/a%00b/producer", "not_found"),
    ],
)
async def test_nul_in_a_websocket_path_is_refused(pg_server: Any, path: str, error: str) -> None:
    """A WebSocket path with NUL in its call SID or bot id is refused like any
    SID or id that cannot exist (one error, close 1008), not an internal error.
    (A bot's subscriber socket takes only a token minted for an existing bot.)"""
    server, session = pg_server
    msg, _ = await expect_refusal(server, path, _key(session))
    assert msg["error"] == error


async def test_nul_from_the_producers_is_refused_and_not_stored(pg_server: Any) -> None:
    """A call producer's transcript and a meeting bot's event with NUL in a text are
    refused on the socket, which stays open, and nothing of them is stored."""
    server, session = pg_server
    sid = new_sid()
    assert session.post(_url(server, "/v1/calls"), json={"call_sid": sid}).status_code == 201
    ws = await connect_ingest(server, sid, _key(session))
    try:
        await send_json(ws, {"content": "x", "speaker": "user", "segment_id": NUL, "ref": 1})
        refused = await recv_json(ws)
        assert [refused[k] for k in ("type", "error", "ref")] == ["error", "invalid_message", 1]
        await send_json(ws, {"content": "ok", "speaker": "user", "ref": 2})
        assert (await recv_json(ws))["type"] == "ack"
    finally:
        await ws.close()
    transcript = session.get(_url(server, f"/v1/calls/{sid}")).json()["transcript"]
    assert [t["content"] for t in transcript] == ["ok"]

    bot = session.post(
        _url(server, "/v1/bots"),
        json={**BOT, "bot_name": "n"},
    ).json()
    producer = await open_url(bot["producer_url"])
    try:
        assert await produce(producer, "start") == 1
        await send_json(producer, {"type": "stop", "data": {"reason": NUL}})
        assert (await recv_json(producer))["type"] == "error"
        assert await produce(producer, "chat-message", {"username": "u", "content": "hi"}) == 2
    finally:
        await producer.close()
    stored = session.get(_url(server, f"/v1/bots/{bot['id']}")).json()
    assert stored["status"] != "finished" and stored["stop_reason"] is None
