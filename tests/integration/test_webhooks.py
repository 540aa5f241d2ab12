"""Signed webhooks end to end: a real server delivers to a real HTTP receiver on
loopback (allowed here by ``SCRIBELINE_WEBHOOK_ALLOW_PRIVATE``), with short retry
settings so that retries, giving up and disabling happen within the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from standardwebhooks import Webhook

from tests.integration.helpers import (
    Api,
    Response,
    ServerProcess,
    Tenant,
    new_sid,
    running_server,
    transcript,
)
from tests.integration.webhook_receiver import Received, Receiver

#: Retries every 50 to 200 ms, given up after 2 s, the endpoint disabled when a
#: delivery dies after 1 s of failures.
WEBHOOK_ENV = {
    "SCRIBELINE_WEBHOOK_ALLOW_PRIVATE": "true",
    "SCRIBELINE_WEBHOOK_BACKOFF": "0.05",
    "SCRIBELINE_WEBHOOK_BACKOFF_MAX": "0.2",
    "SCRIBELINE_WEBHOOK_RETRY_WINDOW": "2",
    "SCRIBELINE_WEBHOOK_DISABLE_AFTER": "1",
    "SCRIBELINE_WEBHOOK_POLL_INTERVAL": "0.2",
    "SCRIBELINE_WEBHOOK_TIMEOUT": "2",
    "SCRIBELINE_WEBHOOK_LEASE": "4",
}


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("webhooks") / "data", WEBHOOK_ENV) as srv:
        yield srv


@pytest.fixture(scope="module")
def keys(hook_server: ServerProcess) -> dict[str, str]:
    hook_server.cli("orgs", "create", "hooks")
    return {
        "admin": hook_server.create_key("hooks", "admin"),
        "rw": hook_server.create_key("hooks", "read,write"),
        "read": hook_server.create_key("hooks", "read"),
    }


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.close()


def apis(http: aiohttp.ClientSession, server: ServerProcess, keys: dict[str, str]) -> Api:
    return Api(http, server, keys["rw"])


#: Endpoints the running test created (deleted after it: each test sees its own).
_CREATED: list[tuple[Api, str, int]] = []


@pytest.fixture(autouse=True)
async def _delete_hooks(http: aiohttp.ClientSession) -> AsyncIterator[None]:
    yield  # (before ``http`` closes)
    while _CREATED:
        api, admin, hook_id = _CREATED.pop()
        await api.request("DELETE", f"/v1/webhooks/{hook_id}", key=admin)


async def create_hook(api: Api, admin: str, url: str, events: list[str]) -> dict[str, Any]:
    body = {"url": url, "events": events}
    resp = await api.request("POST", "/v1/webhooks", json_body=body, key=admin)
    assert resp.status == 201, resp.text
    assert isinstance(resp.body, dict)
    _CREATED.append((api, admin, resp.body["id"]))
    return resp.body


def verified(secret: str, got: Received) -> Any:
    """The body, once ``standardwebhooks`` has verified its signature."""
    return Webhook(secret).verify(got.body.decode(), got.headers)


async def eventually(
    fetch: Callable[[], Awaitable[Response]], done: Callable[[Response], bool], within: float = 20
) -> Response:
    """Ask the server until its answer satisfies ``done`` (nothing to await: its
    state changes without a message to us)."""
    async with asyncio.timeout(within):
        while True:
            answer = await fetch()
            if done(answer):
                return answer
            await asyncio.sleep(0.05)


def seqs_of(records: list[Received]) -> list[int]:
    return [r.json["data"]["seq"] for r in records]


async def test_deliveries_arrive_signed_in_order_and_the_api_checks_scopes(
    http: aiohttp.ClientSession, hook_server: ServerProcess, keys: dict[str, str],
    receiver: Receiver,
) -> None:  # fmt: skip
    """Every subscribed event of a call arrives once, signed (verified by the
    ``standardwebhooks`` package), in seq order, with a stable ``webhook-id``;
    the secret is shown at creation only; ``read`` looks, ``admin`` changes."""
    api = apis(http, hook_server, keys)
    read_only = await api.request(
        "POST", "/v1/webhooks",
        json_body={"url": receiver.url("/ordered"), "events": ["alert"]}, key=keys["read"],
    )  # fmt: skip
    assert read_only.status == 403
    events = ["call.started", "transcript.final", "call.ended"]
    hook = await create_hook(api, keys["admin"], receiver.url("/ordered"), events)
    secret = hook.pop("secret")
    assert secret.startswith("whsec_") and hook["events"] == events and hook["enabled"]
    listed = await api.request("GET", "/v1/webhooks", key=keys["read"])
    assert listed.status == 200 and hook in listed.body["webhooks"]
    assert "secret" not in listed.text and secret not in listed.text

    sid = new_sid()
    await api.create_call(sid)
    for n in range(10):
        await api.post_transcript(sid, transcript(f"final {n}"))
        await api.post_transcript(sid, transcript(f"partial {n}", is_final=False))
    await api.post_transcripts(sid, [transcript(f"batch {n}") for n in range(5)])
    await api.post_status(sid, "completed")
    records = await receiver.wait_for(lambda got: len(got) >= 17)
    bodies = [verified(secret, got) for got in records]
    assert [b["type"] for b in bodies] == ["call.started"] + ["transcript.final"] * 15 + [
        "call.ended"
    ]
    assert all(b["data"]["call_sid"] == sid for b in bodies)
    assert seqs_of(records) == sorted(seqs_of(records))
    assert [b["data"]["content"] for b in bodies[1:16]] == [f"final {n}" for n in range(10)] + [
        f"batch {n}" for n in range(5)
    ]
    ids = [r.headers["webhook-id"] for r in records]
    assert len(set(ids)) == len(ids) and ids[0] == f"msg_{hook['id']}_" + ids[0].split("_", 2)[2]

    log = await eventually(  # the last answer is recorded a moment after it arrived
        lambda: api.request(
            "GET", f"/v1/webhooks/{hook['id']}/deliveries?limit=5", key=keys["read"]
        ),
        lambda r: r.body["deliveries"][0]["state"] == "delivered",
    )
    assert log.status == 200 and len(log.body["deliveries"]) == 5
    newest = log.body["deliveries"][0]
    assert newest["event_type"] == "call.ended" and newest["state"] == "delivered"
    assert newest["log"][0]["status"] == 200 and newest["webhook_id"] == ids[-1]
    assert secret not in log.text and "batch 4" not in log.text  # no bodies in the log
    follow = await api.request(
        "GET", f"/v1/webhooks/{hook['id']}/deliveries?cursor={log.body['next_cursor']}",
        key=keys["read"],
    )  # fmt: skip
    assert follow.status == 200 and follow.body["deliveries"][0]["id"] < newest["id"] - 3

    assert (await api.request("DELETE", f"/v1/webhooks/{hook['id']}", key=keys["rw"])).status == 403
    assert (
        await api.request("DELETE", f"/v1/webhooks/{hook['id']}", key=keys["admin"])
    ).status == 204
    gone = await api.request("GET", f"/v1/webhooks/{hook['id']}", key=keys["read"])
    assert gone.status == 404


async def test_a_receiver_that_fails_then_recovers_gets_every_event_in_order(
    http: aiohttp.ClientSession, hook_server: ServerProcess, keys: dict[str, str],
    receiver: Receiver,
) -> None:  # fmt: skip
    """Three 500s, then success: the first event is retried (with the same
    webhook-id) until it is taken, and the next ones follow only after it."""
    api = apis(http, hook_server, keys)
    receiver.answer("/flaky", failures=3)
    hook = await create_hook(api, keys["admin"], receiver.url("/flaky"), ["transcript.final"])
    sid = new_sid()
    await api.create_call(sid)
    for n in range(3):
        await api.post_transcript(sid, transcript(f"line {n}"))
    records = await receiver.wait_for(lambda got: len(got) >= 6)
    assert len({r.headers["webhook-id"] for r in records[:4]}) == 1  # one event, four tries
    assert seqs_of(records) == [2, 2, 2, 2, 3, 4]
    assert [verified(hook["secret"], r)["data"]["content"] for r in records[3:]] == [
        "line 0", "line 1", "line 2",
    ]  # fmt: skip
    log = await eventually(
        lambda: api.request("GET", f"/v1/webhooks/{hook['id']}/deliveries", key=keys["read"]),
        lambda r: r.body["deliveries"][0]["state"] == "delivered",
    )
    first = log.body["deliveries"][-1]
    assert first["attempts"] == 4 and first["state"] == "delivered"
    assert [a["status"] for a in first["log"]] == [500, 500, 500, 200]
    assert first["log"][0]["error"] == "HTTP 500"


async def test_persistent_failure_disables_the_endpoint_and_replay_resends(
    http: aiohttp.ClientSession, hook_server: ServerProcess, keys: dict[str, str],
    receiver: Receiver,
) -> None:  # fmt: skip
    """A receiver that always fails: the delivery is given up after the retry
    window and the endpoint is disabled (it gets no new rows); enabled again and
    replayed, the given-up delivery arrives."""
    api = apis(http, hook_server, keys)
    receiver.answer("/down", status=503)
    hook = await create_hook(api, keys["admin"], receiver.url("/down"), ["transcript.final"])
    path = f"/v1/webhooks/{hook['id']}"
    sid = new_sid()
    await api.create_call(sid)
    await api.post_transcript(sid, transcript("lost"))
    state = await eventually(
        lambda: api.request("GET", path, key=keys["read"]), lambda r: not r.body["enabled"]
    )
    assert state.body["disabled_reason"] == "failing"
    log = await api.request("GET", f"{path}/deliveries", key=keys["read"])
    (dead,) = log.body["deliveries"]
    assert dead["state"] == "dead" and dead["attempts"] >= 3
    assert {a["status"] for a in dead["log"]} == {503}

    receiver.answer("/down", status=204)
    tried = len(receiver.at("/down"))
    enabled = await api.request("PATCH", path, json_body={"enabled": True}, key=keys["admin"])
    assert enabled.status == 200 and enabled.body["disabled_reason"] is None
    bad = await api.request("POST", f"{path}/replay", json_body={}, key=keys["admin"])
    assert bad.status == 422
    replay = await api.request(
        "POST", f"{path}/replay", json_body={"delivery_ids": [dead["id"]]}, key=keys["admin"]
    )
    assert replay.status == 202 and replay.body == {"replayed": 1}
    records = await receiver.wait_for(lambda got: len(receiver.at("/down")) > tried)
    assert verified(hook["secret"], records[-1])["data"]["content"] == "lost"
    assert records[-1].headers["webhook-id"] == receiver.at("/down")[0].headers["webhook-id"]


async def test_urls_that_are_not_public_are_refused_by_default(
    http: aiohttp.ClientSession, server: ServerProcess, tenant_a: Tenant
) -> None:
    """On a server with the default settings, loopback, private, link-local and
    mapped addresses, ``localhost`` and plain http are refused at creation (422)."""
    api = Api(http, server, server.create_key(tenant_a.org, "admin"))
    for url in (
        "https://127.0.0.1/hook", "https://10.0.0.5/hook", "https://169.254.169.254/",
        "https://[::ffff:127.0.0.1]/", "https://[::1]:8443/", "https://localhost/",
        "http://hooks.example.com/",
    ):  # fmt: skip
        resp = await api.request(
            "POST", "/v1/webhooks", json_body={"url": url, "events": ["alert"]}
        )
        assert resp.status == 422, (url, resp.text)
        assert resp.body["error"] == "invalid_request"
    ok = await api.request(
        "POST",
        "/v1/webhooks",
        json_body={"url": "https://hooks.example.com/in", "events": ["alert"]},
    )
    assert ok.status == 201


async def test_a_held_attempt_is_the_only_one_of_its_call(
    http: aiohttp.ClientSession, hook_server: ServerProcess, keys: dict[str, str],
    receiver: Receiver,
) -> None:  # fmt: skip
    """An attempt the receiver holds is one attempt: the server does not send the
    event again, nor the next one of the call, until it is answered."""
    api = apis(http, hook_server, keys)
    release = asyncio.Event()
    receiver.answer("/held", hold=release)
    await create_hook(api, keys["admin"], receiver.url("/held"), ["transcript.final"])
    sid = new_sid()
    await api.create_call(sid)
    await api.post_transcript(sid, transcript("one"))
    await api.post_transcript(sid, transcript("two"))
    await receiver.wait_for(lambda got: len(receiver.at("/held")) >= 1)
    # Another call's event goes meanwhile: proof the deliverer is not stuck.
    other = new_sid()
    await api.create_call(other)
    receiver.answer("/other")
    await create_hook(api, keys["admin"], receiver.url("/other"), ["transcript.final"])
    await api.post_transcript(other, transcript("beside"))
    await receiver.wait_for(lambda got: len(receiver.at("/other")) >= 1)
    # The other call's event reached the held endpoint too: calls do not wait
    # on each other.
    await receiver.wait_for(lambda got: len(receiver.at("/held")) >= 2)
    held = [r for r in receiver.at("/held") if r.json["data"]["call_sid"] == sid]
    assert seqs_of(held) == [2]
    release.set()
    await receiver.wait_for(lambda got: len(receiver.at("/held")) >= 3)
    held = [r for r in receiver.at("/held") if r.json["data"]["call_sid"] == sid]
    assert seqs_of(held) == [2, 3]


async def test_an_alert_is_delivered_after_the_final_that_fired_it(
    http: aiohttp.ClientSession, hook_server: ServerProcess, keys: dict[str, str],
    receiver: Receiver,
) -> None:  # fmt: skip
    """A keyword rule fires on a final: the ``alert`` webhook carries the rule and
    arrives after the ``transcript.final`` of the segment that fired it."""
    api = apis(http, hook_server, keys)
    rule = await api.request(
        "POST", "/v1/alert-rules",
        json_body={"name": "refunds", "kind": "keyword", "keywords": ["refund"]},
        key=keys["admin"],
    )  # fmt: skip
    assert rule.status == 201, rule.text
    try:
        hook = await create_hook(
            api, keys["admin"], receiver.url("/alerts"), ["transcript.final", "alert"]
        )
        sid = new_sid()
        await api.create_call(sid)
        await api.post_transcript(sid, transcript("I want a refund now", speaker="user"))
        records = await receiver.wait_for(lambda got: len(got) >= 2)
        final, alert = (verified(hook["secret"], r) for r in records[:2])
        assert final["type"] == "transcript.final" and alert["type"] == "alert"
        assert alert["data"]["rule"]["name"] == "refunds" and alert["data"]["call_sid"] == sid
        assert alert["data"]["segment_seq"] == final["data"]["seq"] < alert["data"]["seq"]
    finally:
        await api.request("DELETE", f"/v1/alert-rules/{rule.body['id']}", key=keys["admin"])
