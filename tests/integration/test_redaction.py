"""PII redaction at ingest, against a real server: off by default, switched on per
organization (admin), applied before a transcript is stored or streamed, whether
it came over REST or the producer WebSocket, and overridden per assistant."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from .helpers import (
    Api,
    ServerProcess,
    connect_ingest,
    new_sid,
    open_live,
    read_until_seq,
    recv_json,
    send_json,
    transcript,
)

CARD = "4111 1111 1111 1111"
SPOKEN_CARD = "five five five five five five five five five five five five four four four four"
EMAIL = "jane.doe@gmail.com"


def new_org(server: ServerProcess, http: aiohttp.ClientSession) -> tuple[str, str, Api]:
    """A fresh organization (the shared ones' settings stay as other tests expect),
    its admin key (admin grants every scope) and a client with it."""
    org = f"pii-{uuid.uuid4().hex[:8]}"
    server.cli("orgs", "create", org)
    key = server.create_key(org, "admin")
    return org, key, Api(http, server, key)


async def stored_contents(api: Api, sid: str) -> list[str]:
    resp = await api.request("GET", f"/v1/calls/{sid}")
    assert resp.status == 200, resp.text
    return [t["content"] for t in resp.body["transcript"]]


async def patch_org(api: Api, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    resp = await api.request("PATCH", "/v1/organization", json_body=body)
    assert resp.status == status, f"{resp.status}: {resp.text[:300]}"
    return resp.body  # type: ignore[no-any-return]


async def test_redaction_is_off_by_default_and_changed_by_admins_only(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """A new organization redacts nothing; only an admin key may switch it on, with
    kinds that exist; read keys see the settings."""
    org, _, admin = new_org(server, http)
    reader = Api(http, server, server.create_key(org, "read,write"))  # not admin

    resp = await reader.request("GET", "/v1/organization")
    assert resp.status == 200, resp.text
    assert resp.body["name"] == org
    assert (resp.body["redaction"], resp.body["retention_days"]) == ([], None)

    sid = new_sid()
    await reader.create_call(sid)
    resp = await reader.request(
        "POST", f"/v1/calls/{sid}/transcripts", json_body=transcript(f"card {CARD}")
    )
    assert resp.status == 201, resp.text
    assert await stored_contents(reader, sid) == [f"card {CARD}"]  # off: stored as sent

    await patch_org(reader, {"redaction": ["card"]}, status=403)
    for bad in ({"redaction": ["cards"]}, {"redaction": ["card", "card"]}, {}, {"x": 1}):
        await patch_org(admin, bad, status=422)
    await patch_org(admin, {"retention_days": 0}, status=422)

    changed = await patch_org(admin, {"redaction": ["card", "email"], "retention_days": 30})
    assert (changed["redaction"], changed["retention_days"]) == (["card", "email"], 30)
    # Absent fields stay; null retention keeps calls forever.
    changed = await patch_org(admin, {"retention_days": None})
    assert (changed["redaction"], changed["retention_days"]) == (["card", "email"], None)
    assert (await reader.request("GET", "/v1/organization")).body == changed


async def test_stored_and_streamed_text_carry_placeholders_never_the_number(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """With card and email on, a card number (written or spoken) and an email posted
    over REST and over the producer WebSocket, partial or final, are stored and
    streamed as ``[CARD]``/``[EMAIL]``; a number that fails Luhn stays."""
    _, key, api = new_org(server, http)
    await patch_org(api, {"redaction": ["card", "email"]})

    sid = new_sid()
    await api.create_call(sid)
    ws, _ = await open_live(server, sid, key, since=1)
    async with ws, await connect_ingest(server, sid, key) as producer:
        resp = await api.request(
            "POST", f"/v1/calls/{sid}/transcripts", json_body=transcript(f"my card is {CARD}")
        )
        assert resp.status == 201, resp.text
        await send_json(producer, transcript(f"it's {SPOKEN_CARD}", is_final=False, ref="p"))
        await send_json(producer, transcript(f"mail {EMAIL}, order 4111 1111 1111 1112", ref="f"))
        acks = [await recv_json(producer), await recv_json(producer)]
        assert [a["ref"] for a in acks] == ["p", "f"], acks
        streamed = await read_until_seq(ws, acks[-1]["seq"])

    expected = [
        "my card is [CARD]",
        "it's [CARD]",
        "mail [EMAIL], order 4111 1111 1111 1112",  # fails Luhn: not a card
    ]
    live = [m["data"]["content"] for m in streamed if m.get("type") == "transcript"]
    assert live == expected, streamed
    assert await stored_contents(api, sid) == [expected[0], expected[2]]  # finals only
    for text in [*live, str(streamed)]:
        assert "4111 1111 1111 1111" not in text and "jane.doe" not in text
        assert "five five five" not in text


async def test_an_assistant_overrides_the_organization(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """An assistant's ``redaction`` replaces the organization's ([] is off for it),
    and null makes it inherit again; other assistants keep the organization's."""
    _, _, api = new_org(server, http)
    await patch_org(api, {"redaction": ["card"]})
    made = await api.request("POST", "/v1/assistants", json_body={"name": "Billing"})
    assert made.status == 201 and made.body["redaction"] is None, made.text
    path = f"/v1/assistants/{made.body['id']}"

    async def said(text: str) -> str:
        sid = new_sid()
        await api.create_call(sid, assistant_id=made.body["id"])
        resp = await api.request("POST", f"/v1/calls/{sid}/transcripts", json_body=transcript(text))
        assert resp.status == 201, resp.text
        return (await stored_contents(api, sid))[0]

    assert await said(f"card {CARD}") == "card [CARD]"  # inherited
    resp = await api.request("PATCH", path, json_body={"redaction": []})
    assert resp.status == 200 and resp.body["redaction"] == [], resp.text
    assert await said(f"card {CARD}") == f"card {CARD}"  # off for this assistant
    resp = await api.request("PATCH", path, json_body={"redaction": ["email"]})
    assert resp.body["redaction"] == ["email"], resp.text
    assert await said(f"card {CARD} {EMAIL}") == f"card {CARD} [EMAIL]"
    listed = (await api.request("GET", "/v1/assistants")).body["assistants"]
    assert {a["id"]: a["redaction"] for a in listed}[made.body["id"]] == ["email"]
    resp = await api.request("PATCH", path, json_body={"redaction": None})
    assert resp.status == 200 and resp.body["redaction"] is None, resp.text
    assert await said(f"card {CARD} {EMAIL}") == f"card [CARD] {EMAIL}"  # inherits again
    resp = await api.request("PATCH", path, json_body={"redaction": ["nope"]})
    assert resp.status == 422, resp.text
