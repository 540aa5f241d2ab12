"""The client SDK's pure parts: backoff, error mapping, the sessions' message and close
logic, and the transcript view, driven without a server."""

from __future__ import annotations

import logging
import random
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from scribeline.client import (
    ApiError,
    AuthenticationError,
    Backoff,
    ConflictError,
    ErrorEvent,
    InvalidRequestError,
    KeepAlive,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    StatusEvent,
    StreamRefused,
    TranscriptEvent,
    TranscriptView,
)
from scribeline.client.errors import api_error, redact_url
from scribeline.client.sessions import (
    BotSession,
    CampaignSession,
    EventsSession,
    LiveTranscriptSession,
)
from scribeline.client.stream import End

SID = "CA0123456789"
TS = "2026-01-19T12:00:05.123Z"


# --------------------------------------------------------------------------- wire messages


def established(epoch: str = "ep1", since: int | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "connection_established",
        "call_sid": SID,
        "timestamp": TS,
        "message": "Connected to live transcript stream",
        "epoch": epoch,
    }
    if since is not None:
        message["since"] = since
    return message


def snapshot(status: str = "in-progress") -> dict[str, Any]:
    return {
        "type": "call_status",
        "call_sid": SID,
        "timestamp": TS,
        "status": status,
        "metadata": {"call_type": "inbound"},
    }


def status(seq: int, value: str) -> dict[str, Any]:
    return {
        "type": "call_status",
        "call_sid": SID,
        "timestamp": TS,
        "seq": seq,
        "status": value,
        "metadata": {},
    }


def transcript(
    seq: int, content: str, *, is_final: bool = True, segment_id: str | None = None
) -> dict[str, Any]:
    data = {
        "content": content,
        "speaker": "user",
        "is_final": is_final,
        "confidence": 0.9,
        "segment_start": 1.0,
        "segment_end": 2.0,
        "segment_id": segment_id,
        "created_at": TS,
    }
    return {"type": "transcript", "call_sid": SID, "timestamp": TS, "seq": seq, "data": data}


def error(code: str, message: str = "no") -> dict[str, Any]:
    return {"type": "error", "call_sid": SID, "timestamp": TS, "error": code, "message": message}


def feed(session: LiveTranscriptSession, *messages: dict[str, Any]) -> list[Any]:
    """Every event the session yields for ``messages``, in order."""
    return [event for message in messages for event in session.handle(message)]


def live(since: int | None = None, finals_only: bool = False) -> LiveTranscriptSession:
    session = LiveTranscriptSession("ws://h:1", SID, since, finals_only)
    session.connecting()
    return session


def query(session: LiveTranscriptSession) -> dict[str, list[str]]:
    return parse_qs(urlsplit(session.url()).query)


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ws://h:1/v1/bots/b1/subscribe?token=SECRET", "ws://h:1/v1/bots/b1/subscribe"),
        (
            "wss://user:SECRET@example.com/live-transcript/CA1#x",
            "wss://example.com/live-transcript/CA1",
        ),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("ws://[::1]:9/x?since=3&token=SECRET", "ws://[::1]:9/x"),
        ("ws://h:99999999/x?token=SECRET", "<unparsable URL>"),
    ],
)
def test_redact_url_keeps_the_address_and_drops_credentials(url: str, shown: str) -> None:
    """An address shown to a user keeps scheme, host, port and path, never a query,
    fragment or user info (which may carry a token)."""
    assert redact_url(url) == shown
    assert "SECRET" not in redact_url(url)


# --------------------------------------------------------------------------- backoff


def test_backoff_delay_is_between_half_the_ceiling_and_the_ceiling() -> None:
    """Every delay lies in [ceiling/2, ceiling] where the ceiling doubles from initial."""
    backoff = Backoff(initial=0.5, maximum=8.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0)]:
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > ceiling / 4, "the delay is jittered"


def test_backoff_grows_then_caps_even_after_thousands_of_attempts() -> None:
    """The ceiling grows by factor up to maximum and stays there, with no overflow later."""
    backoff = Backoff(initial=0.1, maximum=3.0, factor=3.0)
    rng = random.Random(1)
    assert backoff.delay(0, rng) <= 0.1  # attempt 0 counts as the first
    assert 0.45 <= backoff.delay(3, rng) <= 0.9
    for attempt in (4, 10, 1024, 5000, 10**6):
        assert 1.5 <= backoff.delay(attempt, rng) <= 3.0
    flat = Backoff(initial=1.0, maximum=1.0, factor=1.0)
    assert 0.5 <= flat.delay(10**6, rng) <= 1.0


def test_backoff_exhausted_and_validation() -> None:
    """max_attempts bounds failures in a row (None: never exhausted); bad settings raise."""
    assert not Backoff().exhausted(10**9)
    limited = Backoff(max_attempts=3)
    assert not limited.exhausted(2)
    assert limited.exhausted(3)
    assert limited.exhausted(4)
    for kwargs in (
        {"initial": 0},
        {"initial": 2, "maximum": 1},
        {"factor": 0.5},
        {"max_attempts": 0},
    ):
        with pytest.raises(ValueError):
            Backoff(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- api errors


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, InvalidRequestError),
        (422, InvalidRequestError),
        (429, RateLimitedError),
        (500, ServerError),
        (503, ServerError),
        (405, ApiError),
    ],
)
def test_api_error_class_by_status(status: int, cls: type[ApiError]) -> None:
    """Each HTTP status maps to its documented error class, all ApiErrors."""
    err = api_error(status, {"error": "some_code", "message": "Some message"})
    assert type(err) is cls
    assert isinstance(err, ApiError)
    assert (err.status, err.code, err.message) == (status, "some_code", "Some message")
    assert str(err) == f"{status} some_code: Some message"


def test_api_error_keeps_details_and_survives_odd_bodies() -> None:
    """Fields besides error and message land in details; a non-JSON body still gives an error."""
    problems = [{"loc": ["body", "speaker"], "msg": "Field required", "type": "missing"}]
    err = api_error(422, {"error": "invalid_request", "message": "bad", "details": problems})
    assert err.code == "invalid_request"
    assert err.details == {"details": problems}
    conflict = api_error(409, {"error": "call_ended", "message": "ended"})
    assert isinstance(conflict, ConflictError) and conflict.code == "call_ended"
    assert conflict.details == {}
    for body in (None, "oops", [1, 2]):
        odd = api_error(502, body)
        assert isinstance(odd, ServerError)
        assert (odd.code, odd.message, odd.details) == ("http_error", "HTTP 502", {})


# --------------------------------------------------------------------------- live transcript


def test_snapshot_is_yielded_once_across_connections() -> None:
    """The seq-less status snapshot comes from the first connection only."""
    session = live()
    first = feed(session, established(), snapshot(), status(1, "in-progress"))
    assert [type(e) for e in first] == [StatusEvent, StatusEvent]
    assert first[0].seq is None and first[1].seq == 1
    session.closed(None, "")
    session.connecting()
    assert feed(session, established(), snapshot("ringing")) == []


def test_seqs_are_deduplicated_and_only_advance() -> None:
    """An event at or below the last seq (a replay after reconnecting) is dropped."""
    session = live()
    out = feed(
        session,
        established(),
        snapshot(),
        status(1, "in-progress"),
        transcript(2, "a"),
        transcript(3, "b"),
        transcript(2, "a"),  # replayed
        transcript(3, "b"),
        transcript(5, "d"),  # seqs may jump (a skipped partial)
        transcript(4, "late"),
    )
    assert [e.seq for e in out if e.seq is not None] == [1, 2, 3, 5]
    assert session.last_seq == 5


def test_finals_only_skips_partials_but_advances_last_seq() -> None:
    """With finals_only a partial is not yielded, yet its seq is the resume point."""
    session = live(finals_only=True)
    out = feed(
        session,
        established(),
        snapshot(),
        transcript(2, "hel", is_final=False, segment_id="s1"),
        transcript(3, "hello", is_final=False, segment_id="s1"),
    )
    assert [type(e) for e in out] == [StatusEvent]
    assert session.last_seq == 3
    assert query(session)["since"] == ["3"]
    out = feed(session, transcript(4, "hello there", segment_id="s1"))
    assert [(e.seq, e.content, e.is_final) for e in out] == [(4, "hello there", True)]


def test_url_carries_since_and_epoch_once_known() -> None:
    """The first URL has no query (or the given since); later ones resume with since and epoch."""
    session = live()
    assert session.url() == f"ws://h:1/live-transcript/{SID}"
    feed(session, established("E1"), snapshot())
    assert session.url() == f"ws://h:1/live-transcript/{SID}", "nothing seen yet: from the start"
    feed(session, status(1, "in-progress"), transcript(2, "x"))
    assert query(session) == {"since": ["2"], "epoch": ["E1"]}
    given = live(since=41)
    assert query(given) == {"since": ["41"]}
    odd = LiveTranscriptSession("wss://h", "CA/x y", None, False)
    assert odd.url() == "wss://h/live-transcript/CA%2Fx%20y"


def test_epoch_change_resets_the_position() -> None:
    """A different epoch on reconnection means a reset store: seqs count from the start again."""
    session = live()
    feed(session, established("E1"), snapshot(), status(1, "in-progress"), transcript(7, "old"))
    assert session.last_seq == 7
    session.closed(1011, "")
    session.connecting()
    out = feed(session, established("E2"), snapshot(), status(1, "in-progress"), transcript(2, "n"))
    assert session.last_seq == 2
    assert [e.seq for e in out] == [1, 2]
    assert session.epoch == "E2"
    same = live()
    feed(same, established("E1"), snapshot(), transcript(5, "x"))
    same.connecting()
    feed(same, established("E1"))
    assert same.last_seq == 5, "the same epoch keeps the position"


def test_a_since_beyond_the_stream_adopts_the_servers_replay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the server says it replays from the start (since 0) although we asked for
    seq 999, every replayed event is yielded once, with one warning; later connections
    resume from the adopted position."""
    caplog.set_level(logging.WARNING, logger="scribeline.client")
    session = live(since=999)
    assert query(session) == {"since": ["999"]}
    out = feed(
        session,
        established("E1", since=0),
        snapshot("completed"),
        status(1, "in-progress"),
        transcript(2, "hello"),
        status(3, "completed"),
    )
    assert [e.seq for e in out] == [None, 1, 2, 3]
    assert session.last_seq == 3
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and SID in record.getMessage()
    assert "999" in record.getMessage() and "from the start" in record.getMessage()
    session.connecting()
    assert feed(session, established("E1", since=3), transcript(3, "again")) == []
    assert len(caplog.records) == 1, "a server that resumes where we are says nothing new"


def test_the_servers_start_is_adopted_only_when_it_is_behind_us() -> None:
    """A since at or past our position, or a malformed one, changes nothing; a since
    below it (but not 0) resumes after it."""
    session = live(since=5)
    feed(session, established(since=5))
    assert session.last_seq == 5
    for odd in (True, "2", -1, None):
        feed(session, {**established(), "since": odd})
        assert session.last_seq == 5, odd
    out = feed(session, established(since=2), transcript(3, "c"), transcript(6, "f"))
    assert [e.seq for e in out] == [3, 6]


def test_refusal_before_established_raises_with_the_servers_code() -> None:
    """An error before connection_established is not yielded; the 1008 close raises it."""
    session = live()
    assert feed(session, error("not_found", "Call CA0123456789 not found")) == []
    with pytest.raises(StreamRefused) as info:
        session.closed(1008, "")
    assert info.value.code == "not_found"
    assert info.value.message == "Call CA0123456789 not found"
    assert info.value.close_code == 1008
    bare = live()
    with pytest.raises(StreamRefused) as info:
        bare.closed(1008, "forbidden")
    assert (info.value.code, info.value.close_code) == ("forbidden", 1008)


def test_error_on_an_open_stream_is_an_event_and_a_stale_one_is_forgotten() -> None:
    """After connection_established an error is yielded; a new connection forgets it."""
    session = live()
    out = feed(session, established(), snapshot(), error("invalid_message", "bad"))
    assert isinstance(out[-1], ErrorEvent) and out[-1].code == "invalid_message"
    session.connecting()
    assert not session.established()
    with pytest.raises(StreamRefused) as info:
        session.closed(1008, "")
    assert info.value.code == "refused", "the previous connection's error is not the cause"


def test_close_codes_end_refuse_or_retry() -> None:
    """1000 ends the stream, protocol closes refuse, 1001/1011/1013/abnormal return to retry."""
    session = live()
    feed(session, established(), snapshot())
    with pytest.raises(End):
        session.closed(1000, "")
    for code in (1002, 1003, 1007, 1009, 1010):
        with pytest.raises(StreamRefused) as info:
            live().closed(code, "")
        assert info.value.close_code == code
    for code in (1001, 1011, 1013, None):
        retrying = live()
        feed(retrying, established(), snapshot())
        assert retrying.closed(code, "") is None
        assert not retrying.established()


def test_other_sessions_close_logic() -> None:
    """Campaign, events and bot sessions end on 1000, refuse on 1008 and retry otherwise."""
    campaign = CampaignSession("ws://h", 12)
    campaign.connecting()
    assert campaign.url() == "ws://h/ws/campaigns/12/progress"
    assert list(campaign.handle({"type": "error", "error": "not_found", "message": "m"})) == []
    with pytest.raises(StreamRefused) as info:
        campaign.closed(1008, "")
    assert info.value.code == "not_found"
    events = EventsSession("ws://h", ["transcription"], "*")
    assert events.url() == "ws://h/v1/events"
    events.handle({"type": "connection_established"})
    assert events.closed(1001, "") is None
    with pytest.raises(End):
        events.closed(1000, "")
    bot = BotSession("ws://h/v1/bots/b/ws?token=t")
    assert bot.url() == "ws://h/v1/bots/b/ws?token=t"
    assert list(bot.handle({"type": "ping", "data": {}})) == []
    [chat] = bot.handle({"type": "chat-message", "data": {"content": "hi"}})
    assert (chat.type, chat.data, chat.ends) == ("chat-message", {"content": "hi"}, False)
    with pytest.raises(StreamRefused) as info:
        bot.closed(1008, "forbidden")
    assert info.value.code == "forbidden"
    assert bot.closed(1011, "") is None
    with pytest.raises(End):
        bot.closed(1000, "")


def test_events_session_types_each_message() -> None:
    """The organization stream's messages become transcript, status, campaign and bot events."""
    session = EventsSession("ws://h", ["transcription"], "*")
    session.connecting()
    assert list(session.handle({"type": "connection_established"})) == []
    assert list(session.handle({"type": "subscribed", "topic": "t", "filter": "*"})) == []
    [t] = session.handle(transcript(4, "hi"))
    assert isinstance(t, TranscriptEvent) and (t.call_sid, t.seq) == (SID, 4)
    [s] = session.handle(status(5, "completed"))
    assert isinstance(s, StatusEvent) and s.terminal
    [b] = session.handle({"type": "ts", "bot_id": "b1", "seq": 3, "data": {"transcript": "x"}})
    assert (b.bot_id, b.seq, b.type) == ("b1", 3, "ts")
    [p] = session.handle({"type": "progress", "campaign_id": 9, "data": {"total_contacts": 2}})
    assert p.campaign_id == 9 and p.counters == {"total_contacts": 2}
    [e] = session.handle(error("rate_limited"))
    assert isinstance(e, ErrorEvent) and e.code == "rate_limited"


# --------------------------------------------------------------------------- transcript view


def event(
    seq: int,
    content: str,
    *,
    is_final: bool = True,
    segment_id: str | None = None,
    speaker: str | None = "user",
) -> TranscriptEvent:
    return TranscriptEvent(
        SID, seq, content, speaker, is_final, None, None, None, segment_id, TS, {}
    )


def test_view_replaces_partials_with_the_final_in_place() -> None:
    """Partials of a segment grow in place and the final settles it, keeping its position."""
    view = TranscriptView()
    view.apply(event(1, "Hel", is_final=False, segment_id="a"))
    view.apply(event(2, "Other", segment_id="b", speaker="assistant"))
    view.apply(event(3, "Hello", is_final=False, segment_id="a"))
    changed = view.apply(event(4, "Hello there.", segment_id="a"))
    assert changed is not None and changed.text == "Hello there." and changed.seq == 4
    assert [(s.segment_id, s.text, s.is_final) for s in view.segments] == [
        ("a", "Hello there.", True),
        ("b", "Other", True),
    ]
    corrected = view.apply(event(5, "Other one.", segment_id="b", speaker="assistant"))
    assert corrected is not None and view.segments[1].text == "Other one."


def test_view_ignores_a_late_partial_after_the_final() -> None:
    """A partial that arrives after its segment's final changes nothing."""
    view = TranscriptView()
    view.apply(event(1, "Done.", segment_id="a"))
    assert view.apply(event(2, "Do", is_final=False, segment_id="a")) is None
    assert [s.text for s in view.segments] == ["Done."]


def test_view_segments_without_id_and_text() -> None:
    """A result without segment_id is its own segment; text() renders speaker lines."""
    view = TranscriptView()
    view.apply(event(1, "One.", segment_id=None))
    view.apply(event(2, "One.", segment_id=None))
    view.apply(event(3, "typing", is_final=False, segment_id="p", speaker="assistant"))
    view.apply(event(4, "No speaker.", speaker=None))
    assert len(view.segments) == 4
    assert [s.text for s in view.finals] == ["One.", "One.", "No speaker."]
    assert view.text() == "user: One.\nuser: One.\nassistant: typing\nNo speaker."
    assert view.text(finals_only=True) == "user: One.\nuser: One.\nNo speaker."
    segments = view.segments
    segments.clear()
    assert len(view.segments) == 4, "segments is a copy"


def test_keepalive_validation() -> None:
    """A keep-alive must ping before it would call a quiet connection stalled."""
    assert KeepAlive() == KeepAlive(15.0, 40.0)
    KeepAlive(0.2, 0.6)
    for interval, stall in ((0, 1), (-1, 1), (5, 5), (10, 3)):
        with pytest.raises(ValueError):
            KeepAlive(interval, stall)
