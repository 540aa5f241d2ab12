"""Text with NUL (``\\u0000``) is the client's error on every backend.

PostgreSQL's text columns cannot hold NUL: such a name, phone number or
segment id used to be stored by SQLite and an internal error (500) on
PostgreSQL, and so was a look-up of a call SID or bot id with NUL in the
path. Now bodies are refused with 422 naming the field, and such ids are
simply not found, on PostgreSQL as on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.services import Postgres

from .helpers import ServerProcess, new_sid, running_server

NUL = "a\x00b"


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
    bot = {"meeting_url": "https://meet.example.com/a", "transcription_model": "realtime"}
    cases: list[tuple[str, Any, str]] = [
        ("/v1/assistants", {"name": NUL}, "name"),
        ("/v1/calls", {"call_sid": new_sid(), "to_phone_number": NUL}, "to_phone_number"),
        ("/v1/campaigns", {"name": NUL}, "name"),
        (f"/v1/campaigns/{campaign}/contacts", {"phone_number": NUL}, "phone_number"),
        (f"/v1/calls/{sid}/transcripts", {"content": "x", "speaker": "user", "segment_id": NUL},
         "segment_id"),
        (f"/v1/calls/{sid}/transcripts", {"content": NUL, "speaker": "user"}, "content"),
        ("/v1/bots", {**bot, "bot_name": NUL}, "bot_name"),
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
