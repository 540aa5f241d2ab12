"""Free-form JSON (status metadata, producer refs) is bounded where it comes in.

Everything the server accepts must be storable and sendable again: a value
too deep or too large to encode is refused with a clear error (422, or
``invalid_message`` on a WebSocket), and a producer's acknowledgements keep
flowing after it.
"""

from __future__ import annotations

from typing import Any

import pytest

from .bot_helpers import create_bot, open_url, produce
from .helpers import (
    Api,
    ServerProcess,
    Tenant,
    connect_ingest,
    new_sid,
    recv_json,
    send_json,
    transcript,
)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


TOO_DEEP = _nested(300)  # encodable by no JSON library's default recursion limit
TOO_LARGE = {"blob": "x" * 20_000}


@pytest.mark.parametrize("metadata", [TOO_DEEP, _nested(17), TOO_LARGE])
async def test_rest_refuses_metadata_it_could_not_store(api_a: Api, metadata: Any) -> None:
    """A status update whose metadata is too deep or too large is a 422 that names
    the field, and stores nothing."""
    sid = new_sid()
    await api_a.create_call(sid)
    resp = await api_a.request(
        "POST", f"/v1/calls/{sid}/status", json_body={"status": "completed", "metadata": metadata}
    )
    assert resp.status == 422, resp.text
    assert resp.body["error"] == "invalid_request"
    assert resp.body["details"][0]["loc"] == ["metadata"]
    assert (await api_a.get_call(sid))["status"] == "in-progress"


async def test_metadata_within_the_bounds_is_kept(api_a: Api) -> None:
    """Sixteen levels and a few KiB of metadata are stored and shown as sent."""
    sid = new_sid()
    await api_a.create_call(sid)
    metadata = {"deep": _nested(15), "text": "y" * 4000}
    await api_a.post_status(sid, "in-progress", metadata)
    resp = await api_a.request("GET", f"/v1/calls/{sid}")
    assert resp.status == 200


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "status", "status": "completed", "metadata": TOO_DEEP, "ref": "bad"},
        {"type": "status", "status": "completed", "metadata": TOO_LARGE, "ref": "bad"},
        {**transcript("deep ref"), "ref": TOO_DEEP},
        {**transcript("long ref"), "ref": "r" * 300},
    ],
    ids=["deep-metadata", "large-metadata", "deep-ref", "long-ref"],
)
async def test_the_producer_answers_every_message_after_an_unstorable_one(
    server: ServerProcess, tenant_a: Tenant, api_a: Api, bad: dict[str, Any]
) -> None:
    """A producer message the server cannot store or echo gets ``invalid_message``
    (with its ref when the ref itself is fine), and every later message is
    still acknowledged in order: nothing is stored without an answer."""
    sid = new_sid()
    await api_a.create_call(sid)
    async with await connect_ingest(server, sid, tenant_a.write) as producer:
        await send_json(producer, bad)
        for n in range(3):
            await send_json(producer, transcript(f"after {n}", ref=f"after-{n}"))
        error = await recv_json(producer)
        assert error["type"] == "error" and error["error"] == "invalid_message", error
        if bad["ref"] == "bad":
            assert error["ref"] == "bad"
        else:
            assert "ref" not in error
        acks = [await recv_json(producer) for _ in range(3)]
    assert [(a["type"], a["seq"], a["ref"]) for a in acks] == [
        ("ack", 2, "after-0"),
        ("ack", 3, "after-1"),
        ("ack", 4, "after-2"),
    ]
    call = await api_a.get_call(sid)
    assert call["status"] == "in-progress"
    assert [t["content"] for t in call["transcript"]] == ["after 0", "after 1", "after 2"]


async def test_the_bot_producer_refuses_a_ref_it_could_not_echo(api_a: Api) -> None:
    """A bot event whose ref is too deep to echo gets ``invalid_message``; the
    producer's next events are stored and acknowledged."""
    bot = await create_bot(api_a)
    async with await open_url(bot["producer_url"]) as producer:
        await send_json(producer, {"type": "start", "data": {}, "ref": TOO_DEEP})
        error = await recv_json(producer)
        assert error["type"] == "error" and error["error"] == "invalid_message", error
        assert await produce(producer, "start") == 1
