"""The speech-settings service: an organization's engine choice and its secrets.

Secrets go in sealed (``scribeline.sealed``) and come out only to the code
that uses them (the Twilio signature check, the Deepgram engine), never to an
API response or a log line. Settings are read on every media stream, so they
are cached briefly; a change tells every node to drop its copy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from scribeline.cluster import Signals
from scribeline.domain import SpeechSettings
from scribeline.sealed import SecretBox, SecretUnreadable
from scribeline.speech.twilio import signature_valid
from scribeline.storage import Storage
from scribeline.ttl_cache import TtlCache

__all__ = ["SPEECH_CHANGED", "OrgSpeech", "SpeechSettingsService", "SpeechUpdate"]

log = logging.getLogger(__name__)

#: The cluster notice that an organization's speech settings changed.
SPEECH_CHANGED = "speech.changed"

_TWILIO, _DEEPGRAM = "twilio_auth_token", "deepgram_api_key"

#: Organizations' settings cached at most this many seconds (and dropped on change).
CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class OrgSpeech:
    """An organization's settings, opened: for the media-stream code only."""

    org_id: int
    engine: str
    twilio_auth_token: str | None
    deepgram_api_key: str | None
    require_twilio_signature: bool


@dataclass(frozen=True, slots=True)
class SpeechUpdate:
    """A change: None leaves a field as it is; an empty secret removes it."""

    engine: str | None = None
    twilio_auth_token: str | None = None
    deepgram_api_key: str | None = None
    require_twilio_signature: bool | None = None


def _context(org_id: int, field: str) -> str:
    return f"org:{org_id}:{field}"


class SpeechSettingsService:
    """Reads, changes and opens organizations' speech settings."""

    def __init__(self, storage: Storage, box: SecretBox, signals: Signals) -> None:
        self._storage = storage
        self._box = box
        self._signals = signals
        self._cache: TtlCache[int, OrgSpeech] = TtlCache(CACHE_SECONDS, 10_000)
        # (valid until, [(organization, its Twilio auth token)])
        self._signers: tuple[float, list[tuple[int, str]]] | None = None
        signals.on(SPEECH_CHANGED, self._forget)

    def _forget(self, notice: dict[str, Any]) -> None:
        self._cache.drop(notice["org_id"])
        self._signers = None

    async def get(self, org_id: int) -> SpeechSettings:
        """The stored settings (with sealed secrets: show only whether they are set)."""
        return await self._storage.get_speech_settings(org_id) or SpeechSettings(org_id)

    async def update(self, org_id: int, change: SpeechUpdate) -> SpeechSettings:
        """Store what ``change`` gives (in one statement: concurrent changes of
        other fields stay) and tell every node to drop its copy."""
        changes: dict[str, Any] = {}
        if change.engine is not None:
            changes["engine"] = change.engine
        if change.require_twilio_signature is not None:
            changes["require_twilio_signature"] = change.require_twilio_signature
        for field, secret in (
            (_TWILIO, change.twilio_auth_token),
            (_DEEPGRAM, change.deepgram_api_key),
        ):
            if secret is not None:  # an empty one removes the secret
                changes[field] = self._box.seal(secret, _context(org_id, field)) if secret else None
        if not changes:
            return await self.get(org_id)
        stored = await self._storage.update_speech_settings(org_id, changes)
        await self._signals.broadcast(SPEECH_CHANGED, {"org_id": org_id})
        return stored

    async def opened(self, org_id: int) -> OrgSpeech:
        """The organization's settings with their secrets opened (cached briefly)."""
        now = time.monotonic()
        cached = self._cache.get(org_id, now)
        if cached is not None:
            return cached
        org = self._open(await self.get(org_id))
        self._cache.put(org_id, org, now)
        return org

    async def signer(self, url: str, signature: str) -> OrgSpeech | None:
        """The organization whose Twilio auth token signed ``url`` with ``signature``
        (one HMAC per organization that stored a token). None if none did, or if
        more than one did: organizations sharing a Twilio account cannot be told
        apart by signature, and must use tokens."""
        now = time.monotonic()
        if self._signers is None or self._signers[0] <= now:
            stored = await self._storage.speech_settings_with_twilio_token()
            tokens = [
                (s.org_id, self._open_secret(s.org_id, _TWILIO, s.twilio_auth_token))
                for s in stored
            ]
            signers = [(o, t) for o, t in tokens if t is not None]
            shared = len({t for _, t in signers}) < len(signers)
            if shared:  # said once per refresh, not once per stream
                log.warning("some organizations share a Twilio auth token: use tokens for them")
            self._signers = (now + CACHE_SECONDS, signers)
        matches = [o for o, token in self._signers[1] if signature_valid(token, url, signature)]
        if len(matches) != 1:
            return None
        return await self.opened(matches[0])

    def _open(self, stored: SpeechSettings) -> OrgSpeech:
        return OrgSpeech(
            org_id=stored.org_id,
            engine=stored.engine,
            twilio_auth_token=self._open_secret(stored.org_id, _TWILIO, stored.twilio_auth_token),
            deepgram_api_key=self._open_secret(stored.org_id, _DEEPGRAM, stored.deepgram_api_key),
            require_twilio_signature=stored.require_twilio_signature,
        )

    def _open_secret(self, org_id: int, field: str, sealed: bytes | None) -> str | None:
        if sealed is None:
            return None
        try:
            return self._box.open(sealed, _context(org_id, field))
        except SecretUnreadable as exc:
            # The token secret changed since it was stored: as if it were not set.
            log.warning("organization %d: its stored %s cannot be opened (%s)", org_id, field, exc)
            return None
