"""Which engine transcribes a media stream, and opening its tracks there.

The choice is the assistant's, else the organization's, else the server's
(``speech_engine``). The local engine admits a bounded number of tracks; a
stream past that goes to Deepgram when the organization stored a key, and
is refused otherwise (the phone call itself is not touched: a Twilio
``<Start><Stream>`` is a fork). Every track of a stream goes to one engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from scribeline.config import Settings
from scribeline.domain import Assistant
from scribeline.errors import SpeechNotConfigured, TranscriptionUnavailable
from scribeline.speech.engine import (
    OnSegment,
    SpeechBusy,
    SpeechEngine,
    SpeechTrack,
    SpeechUnavailable,
    SpeechUnreachable,
)
from scribeline.speech.settings import OrgSpeech

__all__ = ["EXTRA_HINT", "Opened", "SpeechRouter"]

log = logging.getLogger(__name__)

#: What to install for the local engine.
EXTRA_HINT = "install the speech extra: pip install 'scribeline[speech]'"


@dataclass(frozen=True, slots=True)
class Opened:
    """A stream's tracks, open on one engine."""

    engine: str
    tracks: dict[str, SpeechTrack]


class SpeechRouter:
    """Opens a stream's tracks on the engine its organization and assistant chose."""

    def __init__(
        self,
        settings: Settings,
        local: SpeechEngine | None,
        deepgram: Callable[[str], SpeechEngine],
        local_missing: str | None = None,
    ) -> None:
        """``local``: the shared local engine (None without the ``speech`` extra,
        ``local_missing`` saying what is missing); ``deepgram``: an engine for a key."""
        self._default = settings.speech_engine
        self._local = local
        self._deepgram = deepgram
        self._local_missing = local_missing

    def choice(self, org: OrgSpeech, assistant: Assistant) -> str:
        for chosen in (assistant.speech_engine, org.engine, self._default):
            if chosen != "default":
                return chosen
        return "local"

    async def open(
        self, org: OrgSpeech, assistant: Assistant, sinks: Mapping[str, OnSegment], label: str
    ) -> Opened:
        """Open one track per sink (keyed by track name); ``label`` names the stream
        in logs. Raises ``TranscriptionUnavailable`` or ``SpeechNotConfigured``."""
        key = org.deepgram_api_key
        if self.choice(org, assistant) == "deepgram":
            if key is None:
                raise SpeechNotConfigured(
                    "Deepgram is chosen but this organization has stored no Deepgram API key"
                )
            return await self._on_deepgram(key, sinks, label)
        if self._local is None:
            if key is not None:
                log.info("%s: no local engine here, the stream goes to Deepgram", label)
                return await self._on_deepgram(key, sinks, label)
            raise SpeechNotConfigured(
                f"The local speech engine is not installed ({self._local_missing}); " + EXTRA_HINT
            )
        try:
            return Opened(self._local.name, await _open_all(self._local, sinks, label))
        except SpeechBusy as busy:
            if key is None:
                raise TranscriptionUnavailable(
                    f"{busy}, and this organization has no Deepgram key to take the stream"
                ) from None
            log.info("%s: %s; the stream goes to Deepgram", label, busy)
        except SpeechUnavailable as broken:  # the model cannot load here
            if key is None:
                raise SpeechNotConfigured(str(broken)) from None
            log.warning("%s: %s; the stream goes to Deepgram", label, broken)
        return await self._on_deepgram(key, sinks, label)

    async def _on_deepgram(self, key: str, sinks: Mapping[str, OnSegment], label: str) -> Opened:
        engine = self._deepgram(key)
        try:
            return Opened(engine.name, await _open_all(engine, sinks, label))
        except (SpeechBusy, SpeechUnreachable) as exc:
            raise TranscriptionUnavailable(str(exc)) from None
        except SpeechUnavailable as exc:
            raise SpeechNotConfigured(str(exc)) from None


async def _open_all(
    engine: SpeechEngine, sinks: Mapping[str, OnSegment], label: str
) -> dict[str, SpeechTrack]:
    """Every track or none: a track that cannot open closes those already open."""
    tracks: dict[str, SpeechTrack] = {}
    try:
        for name, sink in sinks.items():
            tracks[name] = await engine.open_track(sink, f"{label}/{name}")
    except BaseException:
        for track in tracks.values():
            await track.abort()
        raise
    return tracks
