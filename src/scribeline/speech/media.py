"""The media-stream services of one server: credential checks, streams, engines."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from scribeline.auth import Authenticator
from scribeline.cluster import Cluster
from scribeline.config import Settings
from scribeline.errors import TranscriptionUnavailable
from scribeline.ingest.assistants import AssistantService
from scribeline.ingest.calls import CallService
from scribeline.speech.access import MediaAccess
from scribeline.speech.deepgram import DeepgramEngine
from scribeline.speech.engine import SpeechEngine
from scribeline.speech.local import LocalEngine, missing_extra
from scribeline.speech.router import SpeechRouter
from scribeline.speech.settings import SpeechSettingsService
from scribeline.speech.streams import MediaStreamService

__all__ = ["Media", "build_media"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Media:
    access: MediaAccess
    streams: MediaStreamService
    #: The shared local engine (None without the ``speech`` extra).
    local: LocalEngine | None
    #: Media-stream sockets this node holds at most (from the upgrade to the end).
    max_sockets: int = 1000
    sockets: int = 0

    @contextlib.contextmanager
    def socket(self) -> Iterator[None]:
        """Count a media-stream socket for as long as it is open; past
        ``max_sockets`` the upgrade is refused (503, retry later)."""
        if self.sockets >= self.max_sockets:
            raise TranscriptionUnavailable(
                f"This server carries its limit of {self.max_sockets} media streams"
            )
        self.sockets += 1
        try:
            yield
        finally:
            self.sockets -= 1

    async def close(self, within: float) -> None:
        """Let the streams being ended finish (at most ``within`` seconds), abort the
        rest, then close the engines."""
        await self.streams.close(within)
        if self.local is not None:
            await self.local.close()


def build_media(
    settings: Settings,
    auth: Authenticator,
    speech: SpeechSettingsService,
    calls: CallService,
    assistants: AssistantService,
    cluster: Cluster,
) -> Media:
    """The services; the local engine loads its model on first use (``Media.local.load``
    loads it ahead)."""
    missing = missing_extra()
    local = None if missing else LocalEngine(settings)
    if missing:
        log.info("live audio: %s", missing)

    def deepgram(key: str) -> SpeechEngine:
        return DeepgramEngine(key, settings)

    router = SpeechRouter(settings, local, deepgram, missing)
    streams = MediaStreamService(
        calls, assistants, router, cluster, end_grace=settings.media_end_grace
    )
    return Media(MediaAccess(auth, speech), streams, local, settings.media_max_streams)
