"""``/v1/media-stream``: Twilio Media Streams against a real server.

How a stream proves itself (path token, ``token`` custom parameter, Twilio
signature), every refusal, a stream's call lifecycle, and that the server
sends nothing back. Speech quality is in ``test_media_speech.py``.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from scribeline.demo.phone import connected_message, new_stream_sid, start_message

from .helpers import Api, ServerProcess, Tenant, new_sid, running_server
from .media_helpers import MEDIA_ENV, media_url, play, wait_for_status

TWILIO_TOKEN = "f3b1c2d4e5a60718293a4b5c6d7e8f90"


@pytest.fixture(scope="module")
def other(media_server: ServerProcess) -> Tenant:
    return media_server.create_tenant("elsewhere")


async def refused_upgrade(url: str, **headers: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, additional_headers=headers)
    return refused.value.response.status_code


async def closed_after_start(url: str, start: dict[str, object], **headers: str) -> tuple[int, str]:
    """Send connected and start; the close that follows (nothing else may come)."""
    async with connect(url, additional_headers=headers) as ws:
        await ws.send(json.dumps(connected_message()))
        await ws.send(json.dumps(start))
        with pytest.raises(ConnectionClosed) as closed:
            frame = await asyncio.wait_for(ws.recv(), 10)
            pytest.fail(f"the server sent a frame: {frame!r}")
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def start(call_sid: str, **params: str) -> dict[str, object]:
    return start_message(
        sequence=1,
        account_sid="AC" + "0" * 32,
        call_sid=call_sid,
        stream_sid=new_stream_sid(),
        tracks=["inbound", "outbound"],
        custom_parameters=params,
    )


# -- credentials ----------------------------------------------------------------


async def test_path_token_stream_creates_and_completes_its_call(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    sid = new_sid()
    result = await play(media_server, sid, media_tenant.write, cut_after=2.0, send_stop=True)
    assert result.received == []  # Twilio expects nothing back
    call = await wait_for_status(media_api, sid, "completed")
    assert call["call_sid"] == sid


async def test_bad_or_read_only_path_token_is_refused_before_the_upgrade(
    media_server: ServerProcess, media_tenant: Tenant
) -> None:
    assert await refused_upgrade(media_url(media_server, "sk_live_not_a_key")) == 401
    assert await refused_upgrade(media_url(media_server, media_tenant.read)) == 403


async def test_custom_parameter_token_is_checked_on_start(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    sid = new_sid()
    code, reason = await closed_after_start(media_url(media_server), start(sid, token="nope"))
    assert code == 1008 and reason.startswith("authentication_failed")
    code, reason = await closed_after_start(media_url(media_server), start(sid))
    assert code == 1008 and "token" in reason
    resp = await media_api.request("GET", f"/v1/calls/{sid}")
    assert resp.status == 404  # nothing was created for a refused stream

    result = await play(
        media_server, sid, custom_parameters={"token": media_tenant.write}, cut_after=1.0
    )
    assert result.received == []
    await wait_for_status(media_api, sid, "completed")


async def test_only_a_few_messages_may_come_before_start(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    """Early media is passed over, unprocessed; a socket that keeps sending without
    a start is refused."""
    media = {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "////"}
    early = json.dumps({"event": "media", "sequenceNumber": "1", "media": media})
    url = media_url(media_server, media_tenant.write)
    async with connect(url) as ws:
        await ws.send(json.dumps(connected_message()))
        for _ in range(4):
            await ws.send(early)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason.startswith("invalid_message: Expected start")

    sid = new_sid()
    async with connect(url) as ws:
        await ws.send(json.dumps(connected_message()))
        await ws.send(early)
        await ws.send(json.dumps(start(sid)))
        await wait_for_status(media_api, sid, "in-progress")  # the stream went on


async def test_no_start_in_time_is_closed(media_server: ServerProcess) -> None:
    async with connect(media_url(media_server)) as ws:
        await ws.send(json.dumps(connected_message()))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason.split(":")[0]) == (
        1008,
        "request_timeout",
    )


async def test_twilio_signature(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    """Signed with the stored auth token over the wss:// URL: accepted with no token;
    a wrong signature, or one over the https:// URL, is refused before the upgrade."""
    admin = media_server.create_key(media_tenant.org, "admin")
    resp = await media_api.request(
        "PATCH", "/v1/speech", json_body={"twilio_auth_token": TWILIO_TOKEN}, key=admin
    )
    assert resp.status == 200, resp.text
    assert resp.body["twilio_auth_token_set"] is True and TWILIO_TOKEN not in resp.text

    url = media_url(media_server)
    public = url.replace("ws://", "wss://")  # the URL Twilio was given (and signed)
    sid = new_sid()
    result = await play(
        media_server, sid, auth_token=TWILIO_TOKEN, signature_url=public, cut_after=1.0
    )
    assert result.received == [] and result.aborted
    await wait_for_status(media_api, sid, "completed")

    https = url.replace("ws://", "https://")
    for signed_over, token in ((public, "wrong-token"), (https, TWILIO_TOKEN)):
        with pytest.raises(InvalidStatus) as refused:
            await play(media_server, new_sid(), auth_token=token, signature_url=signed_over)
        assert refused.value.response.status_code == 401

    # With a token too, a signature that is present must be right.
    with pytest.raises(InvalidStatus) as refused:
        await play(
            media_server, new_sid(), media_tenant.write, auth_token="wrong", signature_url=public
        )
    assert refused.value.response.status_code == 403

    # Once the organization requires signatures, a token alone is not enough.
    resp = await media_api.request(
        "PATCH", "/v1/speech", json_body={"require_twilio_signature": True}, key=admin
    )
    assert resp.status == 200
    try:
        with pytest.raises(InvalidStatus) as refused:
            await play(media_server, new_sid(), media_tenant.write)
        assert refused.value.response.status_code == 403
    finally:
        resp = await media_api.request(
            "PATCH",
            "/v1/speech",
            json_body={"require_twilio_signature": False, "twilio_auth_token": ""},
            key=admin,
        )
        assert resp.status == 200 and resp.body["twilio_auth_token_set"] is False


async def test_speech_settings_need_admin_and_keep_secrets(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    resp = await media_api.request("PATCH", "/v1/speech", json_body={"engine": "local"})
    assert resp.status == 403
    admin = media_server.create_key(media_tenant.org, "admin")
    resp = await media_api.request("PATCH", "/v1/speech", json_body={"engine": "nope"}, key=admin)
    assert resp.status == 422
    resp = await media_api.request(
        "PATCH", "/v1/speech", json_body={"deepgram_api_key": "dg-secret-123"}, key=admin
    )
    assert resp.status == 200 and "dg-secret-123" not in resp.text
    resp = await media_api.request("GET", "/v1/speech", key=admin)
    assert resp.body["deepgram_api_key_set"] is True and "dg-secret-123" not in resp.text
    db = (media_server.data_dir / "scribeline.db").read_bytes()
    assert b"dg-secret-123" not in db  # sealed at rest
    resp = await media_api.request(
        "PATCH", "/v1/speech", json_body={"deepgram_api_key": ""}, key=admin
    )
    assert resp.body["deepgram_api_key_set"] is False


# -- what a stream may ask for ------------------------------------------------------


async def test_unsupported_format_and_bad_parameters_close_with_a_reason(
    media_server: ServerProcess, media_tenant: Tenant
) -> None:
    url = media_url(media_server, media_tenant.write)
    wide = start(new_sid())
    wide["start"]["mediaFormat"] = {  # type: ignore[index]
        "encoding": "audio/x-l16",
        "sampleRate": 16000,
        "channels": 1,
    }
    code, reason = await closed_after_start(url, wide)
    assert code == 1008 and "mediaFormat" in reason
    code, reason = await closed_after_start(url, start(new_sid(), inbound_speaker="robot"))
    assert code == 1008 and "inbound_speaker" in reason
    code, reason = await closed_after_start(url, start("bad sid!"))
    assert code == 1008 and "call SID" in reason
    code, reason = await closed_after_start(url, start(new_sid(), assistant_id="999999"))
    assert code == 1008 and reason.startswith("not_found")


async def test_a_malformed_or_binary_frame_ends_the_stream_and_its_call(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    for bad in ("{not json", b"\x00\x01binary", json.dumps({"event": "media", "media": {}})):
        sid = new_sid()
        async with connect(media_url(media_server, media_tenant.write)) as ws:
            await ws.send(json.dumps(connected_message()))
            await ws.send(json.dumps(start(sid)))
            await wait_for_status(media_api, sid, "in-progress")
            await ws.send(bad)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert closed.value.rcvd.reason.startswith("invalid_message")
        await wait_for_status(media_api, sid, "completed")


async def test_transcription_switched_off_refuses_and_creates_nothing(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    resp = await media_api.request(
        "POST", "/v1/assistants", json_body={"name": "Quiet", "transcription_enabled": False}
    )
    assert resp.status == 201
    sid = new_sid()
    code, reason = await closed_after_start(
        media_url(media_server, media_tenant.write), start(sid, assistant_id=str(resp.body["id"]))
    )
    assert code == 1008 and reason.startswith("transcription_disabled")
    assert (await media_api.request("GET", f"/v1/calls/{sid}")).status == 404


async def test_a_token_restricted_to_another_call_is_refused(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    resp = await media_api.request(
        "POST",
        "/v1/tokens",
        json_body={"scopes": ["write"], "call_sid": "CAsomeoneelse"},
        key=media_tenant.write,
    )
    assert resp.status == 201, resp.text
    code, reason = await closed_after_start(
        media_url(media_server, resp.body["token"]), start(new_sid())
    )
    assert code == 1008 and reason.startswith("forbidden")


# -- the call -------------------------------------------------------------------


async def test_a_call_created_over_rest_is_attached_and_left_running(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    sid = new_sid()
    await media_api.create_call(sid, status="ringing")
    result = await play(media_server, sid, media_tenant.write, cut_after=1.0)
    assert result.received == []
    # The stream moved it along and, once over, left it running: REST drives this call.
    assert result.aborted
    call = await wait_for_status(media_api, sid, "in-progress")
    assert call["status"] == "in-progress"
    # The stream is over (its finals stored): a final sent now is still accepted.
    await media_api.post_status(sid, "completed")


async def test_an_ended_call_refuses_a_new_stream(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    sid = new_sid()
    await media_api.create_call(sid)
    await media_api.post_status(sid, "completed")
    code, reason = await closed_after_start(media_url(media_server, media_tenant.write), start(sid))
    assert code == 1000 and reason.startswith("call_ended")


async def test_another_organization_never_sees_the_stream(
    media_server: ServerProcess, media_tenant: Tenant, other: Tenant
) -> None:
    """A stream writes to its own organization's call of that SID only."""
    sid = new_sid()
    async with aiohttp.ClientSession() as session:
        theirs = Api(session, media_server, other.rw)
        await theirs.create_call(sid)
        await play(media_server, sid, media_tenant.write, cut_after=1.0)
        ours = Api(session, media_server, media_tenant.rw)
        await wait_for_status(ours, sid, "completed")
        their_call = await theirs.get_call(sid)
        assert their_call["status"] == "in-progress" and their_call["transcript"] == []


async def test_path_token_never_reaches_the_access_log(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    env = {**MEDIA_ENV, "SCRIBELINE_ACCESS_LOG": "true"}
    with running_server(tmp_path_factory.mktemp("medialog") / "data", env) as srv:
        media_tenant = srv.create_tenant("logged")
        await play(srv, new_sid(), media_tenant.write, cut_after=0.5)
        with pytest.raises(InvalidStatus):
            await play(srv, new_sid(), "sk_live_wrong_token_value")
        srv.stop()
        logs = srv.stderr_path.read_text() + "".join(srv.stdout_lines)
    assert "/v1/media-stream/<token>" in logs
    assert media_tenant.write not in logs and "sk_live_wrong_token_value" not in logs


async def test_a_call_ended_over_rest_stops_its_stream(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    """The stream notices at its next segment and closes with 1000 call_ended."""
    sid = new_sid()
    await media_api.create_call(sid)
    player = asyncio.create_task(play(media_server, sid, media_tenant.write, speed=2.0))
    deadline = asyncio.get_running_loop().time() + 30
    while not await media_api.final_transcript(sid):
        assert asyncio.get_running_loop().time() < deadline, "no final within 30 s"
        await asyncio.sleep(0.2)  # polling the REST transcript for the first final
    await media_api.post_status(sid, "completed")
    result = await asyncio.wait_for(player, 60)
    assert result.server_closed and result.received == []
    assert (result.close_code, result.close_reason.split(":")[0]) == (1000, "call_ended")


async def test_a_timestamp_far_ahead_is_skipped_not_waited_for(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    """A day's jump in one message costs 2 s of silence and no wait: the stream
    takes the next messages at once and ends normally."""
    sid = new_sid()
    stream = start(sid)
    stream_sid = stream["streamSid"]
    async with connect(media_url(media_server, media_tenant.write)) as ws:
        await ws.send(json.dumps(connected_message()))
        await ws.send(json.dumps(stream))
        for n, ms in enumerate((0, 86_000_000, 86_000_020), start=2):
            media = {
                "track": "inbound",
                "chunk": str(n),
                "timestamp": str(ms),
                "payload": "/" * 216,
            }
            await ws.send(json.dumps({"event": "media", "sequenceNumber": str(n), "media": media}))
        await ws.send(json.dumps({"event": "stop", "streamSid": stream_sid}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)  # closed after stop, not parked
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    await wait_for_status(media_api, sid, "completed")


async def test_a_node_holds_at_most_its_limit_of_media_sockets(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Past SCRIBELINE_MEDIA_MAX_STREAMS an upgrade is refused with 503, whether or
    not the sockets already held have started; a freed place is taken again."""
    env = {**MEDIA_ENV, "SCRIBELINE_MEDIA_MAX_STREAMS": "1"}
    with running_server(tmp_path_factory.mktemp("mediacap") / "data", env) as srv:
        tenant = srv.create_tenant("capped")
        url = media_url(srv, tenant.write)
        held = await connect(url)  # not started yet: it counts all the same
        try:
            assert await refused_upgrade(url) == 503
        finally:
            await held.close()
        # The place is given back once the server's side of the socket is done.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                result = await play(srv, new_sid(), tenant.write, cut_after=0.5)
                break
            except InvalidStatus as exc:
                assert exc.response.status_code == 503
                assert asyncio.get_running_loop().time() < deadline, "the place stayed taken"
                await asyncio.sleep(0.1)  # polling for the server to let go of the socket
        assert result.aborted and not result.server_closed
