"""Switching transcription off for an assistant: appends refused, statuses still flow."""

from __future__ import annotations

import uuid
from typing import Any

from .helpers import (
    Api,
    Response,
    ServerProcess,
    Tenant,
    collect_until_closed,
    connect_ingest,
    new_sid,
    open_live,
    read_until_seq,
    recv_json,
    send_json,
    transcript,
)


def assert_disabled(resp: Response) -> None:
    assert resp.status == 409, f"expected 409, got {resp.status}: {resp.text[:300]}"
    assert resp.body["error"] == "transcription_disabled", resp.body
    assert isinstance(resp.body["message"], str) and resp.body["message"], resp.body


async def switch(api: Api, assistant_id: int, enabled: bool) -> dict[str, Any]:
    resp = await api.request(
        "PATCH", f"/v1/assistants/{assistant_id}", json_body={"transcription_enabled": enabled}
    )
    assert resp.status == 200, f"patch assistant: {resp.status} {resp.text}"
    assert resp.body["id"] == assistant_id
    assert resp.body["transcription_enabled"] is enabled, resp.body
    return resp.body


async def test_switched_off_assistant_refuses_transcripts_but_not_statuses(
    server: ServerProcess, tenant_a: Tenant, api_a: Api
) -> None:
    """With transcription off, REST and producer appends get transcription_disabled and store
    nothing, statuses are stored and streamed, and switching it back on allows appends."""
    name = f"Quiet {uuid.uuid4().hex[:6]}"
    resp = await api_a.request("POST", "/v1/assistants", json_body={"name": name})
    assert resp.status == 201, resp.text
    assistant = resp.body
    assert assistant["name"] == name and assistant["transcription_enabled"] is True
    assert assistant["is_default"] is False

    sid, other_sid = new_sid(), new_sid()
    await api_a.create_call(sid, assistant_id=assistant["id"])
    await api_a.create_call(other_sid)  # the default assistant's, unaffected
    await switch(api_a, assistant["id"], False)
    listed = (await api_a.request("GET", "/v1/assistants")).body["assistants"]
    assert {a["id"]: a["transcription_enabled"] for a in listed}[assistant["id"]] is False

    ws, snapshot = await open_live(server, sid, tenant_a.read, since=1)
    async with ws, await connect_ingest(server, sid, tenant_a.write) as producer:
        assert snapshot["status"] == "in-progress"
        path = f"/v1/calls/{sid}/transcripts"
        assert_disabled(await api_a.request("POST", path, json_body=transcript("one")))
        batch = [transcript("two"), transcript("three")]
        assert_disabled(await api_a.request("POST", path, json_body=batch))

        await send_json(producer, transcript("four", ref="t1"))
        await send_json(producer, batch)
        await send_json(producer, {"type": "status", "status": "in-progress", "ref": "s1"})
        error = await recv_json(producer)
        assert error["type"] == "error" and error["error"] == "transcription_disabled", error
        assert error["ref"] == "t1", error
        error = await recv_json(producer)
        assert error["type"] == "error" and error["error"] == "transcription_disabled", error
        # Refused appends take no seq: the status is the call's second event.
        ack = await recv_json(producer)
        assert ack == {"type": "ack", "seq": 2, "ref": "s1"}, ack
        rest_seq = await api_a.post_status(sid, "in-progress", {"hold": True})
        assert rest_seq == 3

        events = await read_until_seq(ws, 3)
        assert [(e["type"], e["seq"]) for e in events] == [("call_status", 2), ("call_status", 3)]
        assert events[1]["metadata"]["hold"] is True
        assert events[1]["metadata"]["assistant_id"] == assistant["id"]
        assert (await api_a.get_call(sid))["transcript"] == []

        # Another assistant's call is unaffected meanwhile.
        assert await api_a.post_transcript(other_sid, transcript("elsewhere")) == 2

        await switch(api_a, assistant["id"], True)
        assert await api_a.post_transcript(sid, transcript("back on")) == 4
        await send_json(producer, transcript("via producer", ref="t2"))
        ack = await recv_json(producer)
        assert ack == {"type": "ack", "seq": 5, "ref": "t2"}, ack
        events = await read_until_seq(ws, 5)
        assert [(e["type"], e["data"]["content"]) for e in events] == [
            ("transcript", "back on"),
            ("transcript", "via producer"),
        ]

        await send_json(producer, {"type": "status", "status": "completed", "ref": "end"})
        ack = await recv_json(producer)
        assert ack == {"type": "ack", "seq": 6, "ref": "end"}, ack
        tail, code = await collect_until_closed(ws)
    assert [(e["type"], e["seq"], e["status"]) for e in tail] == [("call_status", 6, "completed")]
    assert code == 1000
    stored = await api_a.get_call(sid)
    assert [t["content"] for t in stored["transcript"]] == ["back on", "via producer"]
    assert stored["status"] == "completed"
