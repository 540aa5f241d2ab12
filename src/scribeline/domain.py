"""Records of the domain: organizations, API keys, assistants, calls, campaigns, bots."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "LATEST_CONTACT",
    "OUTCOMES",
    "REALTIME_MODEL",
    "SPEECH_FIELDS",
    "ApiKey",
    "Assistant",
    "Bot",
    "BotStatus",
    "Call",
    "CallPage",
    "Campaign",
    "CampaignStatus",
    "Contact",
    "ContactStatus",
    "Counters",
    "KeyKind",
    "OrgSettings",
    "Organization",
    "SignInCode",
    "SpeechSettings",
]


@dataclass(frozen=True, slots=True)
class Organization:
    id: int
    name: str
    created_at: int


@dataclass(frozen=True, slots=True)
class OrgSettings:
    """An organization's settings: the PII kinds redacted at ingest (empty: off)
    and how many days ended calls are kept (None: forever)."""

    org_id: int
    name: str
    redaction: tuple[str, ...] = ()
    retention_days: int | None = None


class KeyKind(StrEnum):
    """What a row of ``api_keys`` is."""

    #: An API key (``scl_``): a bearer credential, listed by ``keys list``.
    KEY = "key"
    #: A dashboard session (``scs_``): never a bearer credential, never listed;
    #: the access tokens minted from it die with it.
    SESSION = "session"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key or dashboard session. The secret itself is never stored,
    only its hash."""

    id: int
    org_id: int
    user_id: int
    prefix: str
    scopes: frozenset[str]
    name: str
    created_at: int
    revoked_at: int | None
    kind: str = KeyKind.KEY
    #: Epoch milliseconds from which it no longer works (sessions); None: never.
    expires_at: int | None = None

    @property
    def active(self) -> bool:
        """Not revoked and not expired (now)."""
        return self.active_at(time.time_ns() // 1_000_000)

    def active_at(self, now_ms: int) -> bool:
        """Not revoked and not expired at ``now_ms``."""
        return self.revoked_at is None and (self.expires_at is None or now_ms < self.expires_at)


@dataclass(frozen=True, slots=True)
class SignInCode:
    """A one-time dashboard sign-in code, as stored: the code itself never is.
    Times are epoch milliseconds."""

    org_id: int
    scopes: frozenset[str]
    created_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class Assistant:
    id: int
    org_id: int
    name: str
    is_default: bool
    transcription_enabled: bool = True
    #: The speech engine for its calls' audio: ``default`` (the organization's
    #: choice), ``local`` or ``deepgram``.
    speech_engine: str = "default"


#: The fields of ``SpeechSettings`` a change may set.
SPEECH_FIELDS = ("engine", "twilio_auth_token", "deepgram_api_key", "require_twilio_signature")


@dataclass(frozen=True, slots=True)
class SpeechSettings:
    """An organization's live-audio settings. The secrets are sealed
    (``scribeline.secrets``): what storage holds never reads as the secret."""

    org_id: int
    #: ``default`` (the server's ``speech_engine``), ``local`` or ``deepgram``.
    engine: str = "default"
    twilio_auth_token: bytes | None = None
    deepgram_api_key: bytes | None = None
    #: Refuse media streams of this organization that carry no valid Twilio signature.
    require_twilio_signature: bool = False
    updated_at: int = 0


@dataclass(frozen=True, slots=True)
class Call:
    id: int
    org_id: int
    assistant_id: int
    call_sid: str
    status: str
    to_phone_number: str | None
    customer_phone_number: str | None
    call_type: str | None
    started_at: int
    ended_at: int | None
    campaign_id: int | None = None
    campaign_contact_id: int | None = None

    @property
    def stream(self) -> str:
        return f"call:{self.id}"

    def metadata(self) -> dict[str, Any]:
        """The call's metadata as the live-transcript protocol shows it."""
        from scribeline.events import format_ms

        return {
            "assistant_id": self.assistant_id,
            "started_at": format_ms(self.started_at),
            "to_phone_number": self.to_phone_number,
            "customer_phone_number": self.customer_phone_number,
            "call_type": self.call_type,
        }


@dataclass(frozen=True, slots=True)
class CallPage:
    calls: list[Call]
    next_cursor: str | None


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    COMPLETED = "completed"


class ContactStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"


#: Contact statuses that are final outcomes.
OUTCOMES = frozenset({ContactStatus.SUCCESS, ContactStatus.FAILED, ContactStatus.SKIPPED})


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    org_id: int
    assistant_id: int
    name: str
    status: str
    created_at: int
    started_at: int | None
    completed_at: int | None

    @property
    def stream(self) -> str:
        return f"campaign:{self.id}"


@dataclass(frozen=True, slots=True)
class Contact:
    id: int
    campaign_id: int
    phone_number: str
    name: str | None
    status: str
    call_sid: str | None
    duration: float | None
    error: str | None

    def update_data(self) -> dict[str, Any]:
        """The ``contact_update`` payload: the contact as it is after a status change."""
        return {
            "contact_id": self.id,
            "phone_number": self.phone_number,
            "name": self.name,
            "status": self.status,
            "call_sid": self.call_sid,
            "duration": self.duration,
            "error": self.error,
        }

    def completed_data(self) -> dict[str, Any]:
        """The ``contact_completed`` payload (PROTOCOL.md section 2)."""
        return {
            "contact_id": self.id,
            "phone_number": self.phone_number,
            "name": self.name,
            "outcome": self.status,
            "duration": self.duration,
            "call_sid": self.call_sid,
            "error": self.error,
        }


#: The key of the latest contact change in a ``progress`` event's data.
LATEST_CONTACT = "latest_contact"


@dataclass(frozen=True, slots=True)
class Counters:
    """A campaign's contact counts, computed by storage in one transaction.

    ``latest_contact`` is the latest contact change (the payload of the
    campaign's latest ``contact_update``) where the reader asked for it:
    progress events and the stream's snapshot carry it, REST does not.
    """

    total: int
    pending: int
    in_progress: int
    successful: int
    failed: int
    skipped: int
    total_duration: float
    latest_contact: dict[str, Any] | None = None

    @property
    def completed(self) -> int:
        """Contacts with an outcome (skipped ones count as completed)."""
        return self.successful + self.failed + self.skipped

    @property
    def done(self) -> bool:
        return self.total > 0 and self.pending == 0 and self.in_progress == 0

    def progress(self) -> dict[str, Any]:
        """The ``progress`` counters; success_rate is successful / completed x 100.

        Plus ``latest_contact`` when it is known.
        """
        completed = self.completed
        latest = {} if self.latest_contact is None else {LATEST_CONTACT: self.latest_contact}
        return {
            "total_contacts": self.total,
            "completed_contacts": completed,
            "successful_contacts": self.successful,
            "failed_contacts": self.failed,
            "skipped_contacts": self.skipped,
            "pending_contacts": self.pending,
            "in_progress_contacts": self.in_progress,
            "success_rate": round(self.successful / completed * 100, 1) if completed else 0.0,
            "completion_percentage": round(completed / self.total * 100, 1) if self.total else 0.0,
        } | latest

    def summary(self) -> dict[str, Any]:
        """The ``campaign_completed`` payload."""
        progress = self.progress()
        return {
            key: progress[key]
            for key in (
                "total_contacts",
                "completed_contacts",
                "successful_contacts",
                "failed_contacts",
                "skipped_contacts",
                "success_rate",
            )
        } | {"total_duration": round(self.total_duration, 3)}


class BotStatus(StrEnum):
    """A meeting bot's lifecycle (PROTOCOL.md section 4)."""

    JOINING = "joining"
    RECORDING = "recording"
    FINISHED = "finished"
    FAILED = "failed"


#: Where a bot's transcription model streams live (the only one with URLs).
REALTIME_MODEL = "realtime"


@dataclass(frozen=True, slots=True)
class Bot:
    """A meeting bot. ``id`` is internal (the stream key); ``public_id`` is the API's id."""

    id: int
    public_id: str
    org_id: int
    key_id: int
    meeting_url: str
    bot_name: str
    transcription_model: str
    status: str
    created_at: int
    started_at: int | None
    ended_at: int | None
    stop_reason: str | None
    error: str | None

    @property
    def stream(self) -> str:
        return f"bot:{self.id}"

    @property
    def actions_channel(self) -> str:
        """The broker channel that carries subscribers' actions to the bot's producer."""
        return f"bot-actions:{self.id}"

    @property
    def ended(self) -> bool:
        return self.status in (BotStatus.FINISHED, BotStatus.FAILED)

    @property
    def realtime(self) -> bool:
        return self.transcription_model == REALTIME_MODEL
