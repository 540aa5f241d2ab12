"""Speech in, transcripts out: recorded phone audio through ``/v1/media-stream`` and
the real engines, watched on the live-transcript stream.

The local engine (faster-whisper tiny.en) runs for real; Deepgram is a local fake
speaking its wire format (``tests/speech/deepgram_fake.py``), scripted with the
recording's own words.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from scribeline.demo.phone import (
    connected_message,
    media_message,
    new_stream_sid,
    start_message,
)

from ..speech.deepgram_fake import Utterance as Scripted
from ..speech.deepgram_fake import running_fake
from ..speech.wer import word_error_rate
from .helpers import Api, ServerProcess, Tenant, new_sid, open_live, recv_json, running_server
from .media_helpers import MEDIA_ENV, RECORDING, media_url, play, wait_for_status

#: The bound the default engine meets with margin on this recording (espeak voices
#: through a phone path; measured by bench/speech.py).
MAX_WER = 0.35


async def watch(server: ServerProcess, media_api: Api, sid: str, key: str) -> list[dict[str, Any]]:
    """Every event of the call from its start to its end (history, then live)."""
    await wait_for_status(media_api, sid, "in-progress")  # the stream creates the call
    ws, _ = await open_live(server, sid, key, since=0)
    events = []
    async with ws:
        while True:
            try:
                event = await recv_json(ws, within=90)
            except ConnectionClosed:
                return events
            events.append(event)


def finals_by_track(events: list[dict[str, Any]], stream_sid: str) -> dict[str, list[dict]]:
    finals: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        data = event.get("data", {})
        if event["type"] == "transcript" and data["is_final"]:
            prefix, track, index = data["segment_id"].rsplit(":", 2)
            assert prefix == stream_sid and index.isdigit()
            finals[track].append(data)
    return finals


def spoken(track: str, until: float = 1e9) -> str:
    return " ".join(u.text for u in RECORDING.utterances if u.track == track and u.start < until)


async def test_call_audio_becomes_partials_then_finals_for_both_speakers(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    """A two-track call at real time: interim text firms up into finals with the words
    said, for both speakers, in order, on the live-transcript stream."""
    sid = new_sid()
    stream_sid = new_stream_sid()
    watcher = asyncio.create_task(watch(media_server, media_api, sid, media_tenant.read))
    result = await play(media_server, sid, media_tenant.write, stream_sid=stream_sid, speed=1.0)
    events = await asyncio.wait_for(watcher, 120)
    assert result.received == [] and result.stop_sent

    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # gap-free, no duplicate
    assert events[-1]["type"] == "call_status" and events[-1]["status"] == "completed"

    finals = finals_by_track(events, stream_sid)
    assert {d["speaker"] for d in finals["in"]} == {"user"}
    assert {d["speaker"] for d in finals["out"]} == {"assistant"}
    for track, short in (("inbound", "in"), ("outbound", "out")):
        heard = " ".join(d["content"] for d in finals[short])
        wer = word_error_rate(spoken(track), heard)
        assert wer <= MAX_WER, f"{track}: WER {wer:.2f}: {heard!r}"
        said = [u for u in RECORDING.utterances if u.track == track]
        for d in finals[short]:
            assert 0.0 <= d["confidence"] <= 1.0
            # Each final lies on an utterance of its track (times from the call's start).
            assert any(
                u.start - 1.0 <= d["segment_start"] and d["segment_end"] <= u.end + 1.0
                for u in said
            ), (d, said)

    # Partials come before their final and never after it.
    state: dict[str, str] = {}
    replaced = 0
    for event in events:
        if event["type"] != "transcript":
            continue
        data = event["data"]
        seen = state.get(data["segment_id"])
        assert seen != "final", f"{data['segment_id']} changed after its final"
        if data["is_final"]:
            replaced += seen == "partial"
        state[data["segment_id"]] = "final" if data["is_final"] else "partial"
    assert replaced >= 1, "no interim result was replaced by its final"
    history = await media_api.final_transcript(sid)
    assert all(d["is_final"] for d in history)  # the stored transcript: finals only
    assert len(history) == sum(len(v) for v in finals.values())


async def test_a_cut_stream_flushes_the_word_in_progress_with_swapped_speakers(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    """The socket drops mid-utterance (no stop, no close frame): the audio heard so
    far still becomes a final, and the call the stream created is completed.
    Speakers follow the custom parameters (TwiML on the agent's leg)."""
    sid = new_sid()
    stream_sid = new_stream_sid()
    cut = 7.0  # inside the customer's "Hi, I ordered hiking boots last week ..."
    result = await play(
        media_server,
        sid,
        media_tenant.write,
        stream_sid=stream_sid,
        cut_after=cut,
        custom_parameters={"inbound_speaker": "assistant", "outbound_speaker": "user"},
    )
    assert result.aborted and result.received == []
    await wait_for_status(media_api, sid, "completed")
    history = await media_api.final_transcript(sid)
    inbound = [d for d in history if d["segment_id"].startswith(f"{stream_sid}:in:")]
    outbound = [d for d in history if d["segment_id"].startswith(f"{stream_sid}:out:")]
    assert inbound and {d["speaker"] for d in inbound} == {"assistant"}
    assert outbound and {d["speaker"] for d in outbound} == {"user"}
    last = inbound[-1]
    assert 4.0 <= last["segment_start"] <= cut and last["segment_end"] <= cut + 0.1
    assert any(w in last["content"].lower() for w in ("ordered", "hiking", "boots")), last


async def open_and_hold(url: str, sid: str, tracks: list[str]) -> ClientConnection:
    """A stream that has started (tracks open on an engine) and sends no audio yet."""
    ws = await connect(url)
    await ws.send(json.dumps(connected_message()))
    start = start_message(
        sequence=1,
        account_sid="AC" + "1" * 32,
        call_sid=sid,
        stream_sid=new_stream_sid(),
        tracks=tracks,
        custom_parameters={},
    )
    await ws.send(json.dumps(start))
    return ws


async def test_streams_past_the_local_limit_go_to_deepgram_or_are_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two local tracks per node here: while one two-track call holds them, three more
    streams started at once are all refused with 1013 and create no call; the first
    goes on; with a Deepgram key the next stream is transcribed there."""
    script = [
        Scripted(u.start, u.end, u.text) for u in RECORDING.utterances if u.track == "inbound"
    ]
    async with running_fake(script=script, key="dg-test-key") as fake:
        env = {
            **MEDIA_ENV,
            "SCRIBELINE_SPEECH_MAX_LOCAL_TRACKS": "2",
            "SCRIBELINE_DEEPGRAM_URL": fake.url,
        }
        with running_server(tmp_path_factory.mktemp("capacity") / "data", env) as srv:
            media_tenant = srv.create_tenant("busy")
            admin = srv.create_key(media_tenant.org, "admin")
            async with aiohttp.ClientSession() as session:
                media_api = Api(session, srv, media_tenant.rw)
                first = new_sid()
                held = await open_and_hold(
                    media_url(srv, media_tenant.write), first, ["inbound", "outbound"]
                )
                try:
                    await wait_for_status(media_api, first, "in-progress")
                    extra = [new_sid() for _ in range(3)]
                    refused = await asyncio.gather(
                        *(play(srv, sid, media_tenant.write) for sid in extra)
                    )
                    for result in refused:
                        assert result.close_code == 1013, result
                        assert result.close_reason.startswith("transcription_unavailable")
                    for sid in extra:
                        assert (await media_api.request("GET", f"/v1/calls/{sid}")).status == 404

                    resp = await media_api.request(
                        "PATCH",
                        "/v1/speech",
                        json_body={"deepgram_api_key": "dg-test-key"},
                        key=admin,
                    )
                    assert resp.status == 200
                    handed = new_sid()
                    result = await play(
                        srv, handed, media_tenant.write, tracks=["inbound"], speed=0
                    )
                    assert not result.server_closed and result.received == []
                    await wait_for_status(media_api, handed, "completed")
                    assert len(fake.connections) == 1
                    query = fake.connections[0].query
                    assert (query["encoding"], query["sample_rate"]) == ("mulaw", "8000")
                    finals = await media_api.final_transcript(handed)
                    heard = " ".join(d["content"] for d in finals)
                    assert word_error_rate(spoken("inbound"), heard) == 0.0
                    assert {d["speaker"] for d in finals} == {"user"}
                finally:
                    await held.close()
                await wait_for_status(media_api, first, "completed")
            srv.stop()
            logs = srv.stderr_path.read_text()
    assert "dg-test-key" not in logs


async def test_a_call_with_two_streams_ends_with_the_last_of_them(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    """One stream per track (two <Stream>s): the first to end leaves the call open,
    the other's finals are all stored, and the call completes after the last."""
    sid = new_sid()
    short, full = new_stream_sid(), new_stream_sid()
    first = asyncio.create_task(
        play(
            media_server,
            sid,
            media_tenant.write,
            stream_sid=short,
            tracks=["inbound"],
            speed=4.0,
            cut_after=3.0,
        )
    )
    second = asyncio.create_task(
        play(media_server, sid, media_tenant.write, stream_sid=full, tracks=["outbound"], speed=2.0)
    )
    early, late = await asyncio.gather(first, second)
    assert early.aborted and not late.server_closed
    call = await wait_for_status(media_api, sid, "completed")
    history = await media_api.final_transcript(sid)
    outbound = [d for d in history if d["segment_id"].startswith(f"{full}:out:")]
    # The outbound stream kept going after the inbound one was cut: its last line is in.
    assert outbound and outbound[-1]["segment_start"] > 25.0, outbound
    assert call["status"] == "completed"


async def test_a_stream_stopped_and_started_again_keeps_its_call(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    """<Stop><Stream> then <Start><Stream> (around a card number): the second stream
    of the call is accepted and transcribed; the call completes after it."""
    sid = new_sid()
    before = await play(media_server, sid, media_tenant.write, speed=0, cut_after=1.0)
    assert before.aborted
    again = new_stream_sid()
    after = await play(media_server, sid, media_tenant.write, stream_sid=again, speed=4.0)
    assert not after.server_closed, after.close_reason
    await wait_for_status(media_api, sid, "completed")
    history = await media_api.final_transcript(sid)
    assert any(d["segment_id"].startswith(f"{again}:") for d in history)


async def test_a_long_silence_on_a_track_is_skipped_and_times_stay_true(
    media_server: ServerProcess, media_tenant: Tenant, media_api: Api
) -> None:
    """The customer's track goes quiet for a minute (no media at all, as on hold) and
    resumes just as the customer speaks: the stream goes on, and the line's times are
    the call's, a minute later (not before the silence)."""
    sid = new_sid()
    stream_sid = new_stream_sid()
    hold = 60_000  # ms without media
    first_line = next(u for u in RECORDING.utterances if u.track == "inbound")
    resume_ms = int(first_line.start * 1000) - 60  # 60 ms before the first word
    url = media_url(media_server, media_tenant.write)
    async with connect(url) as ws:
        await ws.send(json.dumps(connected_message()))
        start = start_message(
            sequence=1,
            account_sid="AC" + "2" * 32,
            call_sid=sid,
            stream_sid=stream_sid,
            tracks=["inbound"],
            custom_parameters={},
        )
        await ws.send(json.dumps(start))
        for chunk, frame in enumerate(RECORDING.frames("inbound"), start=1):
            ms = (chunk - 1) * 20
            if ms < resume_ms:
                continue  # before the customer speaks: sent as nothing at all
            message = media_message(
                sequence=chunk + 1,
                stream_sid=stream_sid,
                track="inbound",
                chunk=chunk,
                timestamp_ms=ms + hold,
                audio=frame,
            )
            await ws.send(json.dumps(message))
        await ws.send(json.dumps({"event": "stop", "streamSid": stream_sid}))
    await wait_for_status(media_api, sid, "completed")
    history = await media_api.final_transcript(sid)
    assert history, "nothing was transcribed after the silence"
    assert abs(history[0]["segment_start"] - (first_line.start + hold / 1000)) < 1.0, history[0]
    assert "ordered" in history[0]["content"].lower() or "boots" in history[0]["content"].lower()


async def test_a_server_stopping_mid_call_stores_the_last_finals_first(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """SIGTERM while a call is streamed: the stream's open utterance still becomes a
    final and its call is completed before storage closes (seen after a restart)."""
    data = tmp_path_factory.mktemp("stopping") / "data"
    sid = new_sid()
    with running_server(data, MEDIA_ENV) as srv:
        tenant = srv.create_tenant("stopping")
        async with aiohttp.ClientSession() as session:
            api = Api(session, srv, tenant.rw)
            player = asyncio.create_task(play(srv, sid, tenant.write, speed=1.0))
            await wait_for_status(api, sid, "in-progress")
            deadline = asyncio.get_running_loop().time() + 30
            while not await api.final_transcript(sid):  # the first line (ends at 4.7 s)
                assert asyncio.get_running_loop().time() < deadline, "no final in 30 s"
                await asyncio.sleep(0.2)  # polling the REST transcript
            # The fault goes in at a point of the call's audio: well into the customer's
            # first line (5-9 s), which has no final yet.
            await asyncio.sleep(2.5)
            srv.terminate()
            assert srv.wait() == 0
            result = await player
            assert result.close_code == 1001  # going away: told, not dropped
    with running_server(data, MEDIA_ENV) as srv:
        async with aiohttp.ClientSession() as session:
            api = Api(session, srv, tenant.rw)
            call = await api.get_call(sid)
            assert call["status"] == "completed"
            inbound = [d for d in await api.final_transcript(sid) if ":in:" in d["segment_id"]]
            assert inbound and inbound[0]["segment_start"] < 8.0, inbound
