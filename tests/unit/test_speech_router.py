"""Which engine a stream goes to: assistant, then organization, then server;
the local engine's admission limit overflows to Deepgram or refuses."""

from __future__ import annotations

import pytest

from scribeline.config import Settings
from scribeline.domain import Assistant
from scribeline.errors import SpeechNotConfigured, TranscriptionUnavailable
from scribeline.speech.engine import (
    OnSegment,
    Segment,
    SpeechBusy,
    SpeechEngine,
    SpeechTrack,
    SpeechUnavailable,
    SpeechUnreachable,
)
from scribeline.speech.router import EXTRA_HINT, SpeechRouter
from scribeline.speech.settings import OrgSpeech


class Track(SpeechTrack):
    def __init__(self) -> None:
        self.aborted = False

    def feed(self, mulaw: bytes) -> None: ...

    async def finish(self) -> None: ...

    async def abort(self) -> None:
        self.aborted = True


class Engine(SpeechEngine):
    """An engine with ``room`` tracks; past it, ``refusal`` is raised."""

    def __init__(self, name: str, room: int = 10, refusal: type[Exception] = SpeechBusy) -> None:
        self.name = name
        self.room = room
        self.refusal = refusal
        self.opened: list[Track] = []

    async def open_track(self, on_segment: OnSegment, label: str) -> SpeechTrack:
        if len(self.opened) >= self.room:
            raise self.refusal(f"{self.name} is full")
        track = Track()
        self.opened.append(track)
        return track


async def _sink(segment: Segment) -> None: ...


SINKS = {"inbound": _sink, "outbound": _sink}


def org(engine: str = "default", key: str | None = None) -> OrgSpeech:
    return OrgSpeech(1, engine, None, key, False)


def assistant(engine: str = "default") -> Assistant:
    return Assistant(1, 1, "a", True, True, engine)


def router(local: Engine | None, deepgram: Engine, default: str = "local") -> SpeechRouter:
    settings = Settings(speech_engine=default)  # type: ignore[arg-type]
    return SpeechRouter(settings, local, lambda key: deepgram, "faster_whisper is missing")


@pytest.mark.parametrize(
    ("server", "organization", "assistant_choice", "chosen"),
    [
        ("local", "default", "default", "local"),
        ("deepgram", "default", "default", "deepgram"),
        ("local", "deepgram", "default", "deepgram"),
        ("deepgram", "local", "default", "local"),
        ("local", "deepgram", "local", "local"),
        ("local", "local", "deepgram", "deepgram"),
    ],
)
def test_the_assistant_then_the_organization_then_the_server_choose(
    server: str, organization: str, assistant_choice: str, chosen: str
) -> None:
    r = router(Engine("local"), Engine("deepgram"), default=server)
    assert r.choice(org(organization), assistant(assistant_choice)) == chosen


async def test_a_full_local_engine_overflows_to_deepgram_with_a_key() -> None:
    local, deepgram = Engine("local", room=1), Engine("deepgram")
    opened = await router(local, deepgram).open(org(key="k"), assistant(), SINKS, "s")
    assert opened.engine == "deepgram" and len(deepgram.opened) == 2
    # The one local track opened before the limit was given back, not leaked.
    assert [t.aborted for t in local.opened] == [True]


async def test_a_full_local_engine_without_a_key_refuses_with_a_retryable_error() -> None:
    local = Engine("local", room=0)
    with pytest.raises(TranscriptionUnavailable, match="no Deepgram key"):
        await router(local, Engine("deepgram")).open(org(), assistant(), SINKS, "s")


async def test_no_local_engine_names_the_extra_or_uses_deepgram() -> None:
    with pytest.raises(SpeechNotConfigured) as refused:
        await router(None, Engine("deepgram")).open(org(), assistant(), SINKS, "s")
    assert EXTRA_HINT in refused.value.message and "faster_whisper" in refused.value.message
    deepgram = Engine("deepgram")
    opened = await router(None, deepgram).open(org(key="k"), assistant(), SINKS, "s")
    assert opened.engine == "deepgram"


async def test_deepgram_chosen_without_a_key_or_refusing_it_is_not_configured() -> None:
    with pytest.raises(SpeechNotConfigured, match="no Deepgram API key"):
        await router(Engine("local"), Engine("deepgram")).open(
            org("deepgram"), assistant(), SINKS, "s"
        )
    refusing = Engine("deepgram", room=0, refusal=SpeechUnavailable)
    with pytest.raises(SpeechNotConfigured, match="deepgram is full"):
        await router(Engine("local"), refusing).open(org("deepgram", "k"), assistant(), SINKS, "s")


async def test_a_local_engine_that_cannot_load_falls_back_or_says_why() -> None:
    broken = Engine("local", room=0, refusal=SpeechUnavailable)
    with pytest.raises(SpeechNotConfigured, match="local is full"):
        await router(broken, Engine("deepgram")).open(org(), assistant(), SINKS, "s")
    deepgram = Engine("deepgram")
    opened = await router(broken, deepgram).open(org(key="k"), assistant(), SINKS, "s")
    assert opened.engine == "deepgram" and len(deepgram.opened) == 2


async def test_an_unreachable_deepgram_is_retryable() -> None:
    unreachable = Engine("deepgram", room=0, refusal=SpeechUnreachable)
    with pytest.raises(TranscriptionUnavailable, match="deepgram is full"):
        await router(Engine("local"), unreachable).open(
            org("deepgram", "k"), assistant(), SINKS, "s"
        )
