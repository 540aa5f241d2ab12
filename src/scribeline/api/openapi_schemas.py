"""What the REST endpoints answer, as pydantic models: the response schemas of
``/openapi.json`` (``api/openapi.py``). Pure: no web framework.

The handlers build their answers as plain dicts (``call_json``,
``transcript_json``, ...); these models describe those dicts and are never
used to build them. ``tests/integration/test_fuzz_api.py`` checks every
response of a fuzzing run against them, so the two cannot drift apart.
Unknown fields are refused (``additionalProperties: false``), except where the
wire format allows additions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scribeline.domain import BotStatus, CampaignStatus, ContactStatus
from scribeline.events import CallStatus
from scribeline.ingest.models import RedactionKinds, SpeechEngineName

__all__ = [
    "AlertItem",
    "AlertRuleBody",
    "AlertRuleList",
    "AssistantBody",
    "AssistantList",
    "BotBody",
    "BotEventPage",
    "BotList",
    "CallAlerts",
    "CallBody",
    "CallList",
    "CallWithTranscript",
    "CampaignBody",
    "CampaignList",
    "CaptionsBody",
    "ContactBody",
    "ContactList",
    "ContactPage",
    "ErrorBody",
    "ExportSegment",
    "Health",
    "OrganizationBody",
    "Readiness",
    "SeqBody",
    "SeqsBody",
    "SessionBody",
    "SpeechBody",
    "TokenBody",
    "TranscriptExport",
    "WebhookBody",
    "WebhookCreated",
    "WebhookDeliveries",
    "WebhookList",
    "WebhookReplayed",
]

#: An ISO 8601 UTC timestamp with milliseconds and ``Z``.
TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"

Timestamp = Annotated[str, Field(pattern=TIMESTAMP)]
Scope = Literal["read", "write", "admin"]


class _Exact(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(_Exact):
    """One problem of a request body that failed validation."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(_Exact):
    """Every error: ``error`` is the machine-readable code, ``message`` is for people."""

    error: str
    message: str
    details: list[Problem] | None = Field(None, description="Validation errors (422)")
    retryable: bool | None = Field(None, description="Set (true) on 503s worth retrying")


class Health(_Exact):
    status: Literal["ok"]


class Readiness(_Exact):
    status: Literal["ready", "degraded", "unavailable"]
    checks: dict[str, str]


class CallBody(_Exact):
    call_sid: str
    status: CallStatus
    assistant_id: int
    started_at: Timestamp
    ended_at: Timestamp | None
    to_phone_number: str | None
    customer_phone_number: str | None
    call_type: str | None


class TranscriptItem(BaseModel):
    """A stored transcript: what was ingested, its ``seq`` and ``created_at``."""

    model_config = ConfigDict(extra="allow")  # fields beyond these are additions

    content: str
    speaker: Literal["user", "assistant"]
    is_final: bool
    confidence: float | None
    segment_start: float | None
    segment_end: float | None
    segment_id: str | None
    seq: int = Field(ge=1)
    created_at: Timestamp


class AlertItem(BaseModel):
    """A stored alert: its data (docs/protocol.md, "Alerts"), ``seq`` and ``created_at``."""

    model_config = ConfigDict(extra="allow")  # fields beyond these are additions

    rule: dict[str, Any]
    segment_seq: int
    matched: str
    number: int = Field(ge=1)
    seq: int = Field(ge=1)
    created_at: Timestamp


class CallAlerts(_Exact):
    count: int = Field(ge=1)
    last: AlertItem


class CallSnapshot(CallBody):
    """A call of ``GET /v1/calls?include=latest``."""

    last_seq: int = Field(ge=0)
    latest: TranscriptItem | None
    alerts: CallAlerts | None = Field(description="The call's alerts up to last_seq (null: none)")


class CallList(_Exact):
    calls: list[CallSnapshot | CallBody]
    next_cursor: str | None


class CallWithTranscript(CallBody):
    transcript: list[TranscriptItem]
    next_cursor: str | None


class ExportSegment(_Exact):
    """One final of ``GET /v1/calls/{call_sid}/transcript?format=json`` (exports.py)."""

    seq: int = Field(ge=1)
    segment_id: str | None
    speaker: str
    text: str
    start: float = Field(ge=0, description="Seconds from the start of the call")
    end: float = Field(ge=0)
    confidence: float | None
    created_at: str


class TranscriptExport(_Exact):
    call_sid: str
    segments: list[ExportSegment]


class SeqBody(_Exact):
    seq: int = Field(ge=1)


class SeqsBody(_Exact):
    seqs: list[int]


class AssistantBody(_Exact):
    id: int
    name: str
    is_default: bool
    transcription_enabled: bool
    speech_engine: SpeechEngineName
    #: The assistant's own PII redaction; null inherits the organization's.
    redaction: RedactionKinds | None


class AssistantList(_Exact):
    assistants: list[AssistantBody]


class Progress(BaseModel):
    """A campaign's counters (``latest_contact`` only where the reader asked for it)."""

    model_config = ConfigDict(extra="allow")

    total_contacts: int
    completed_contacts: int
    successful_contacts: int
    failed_contacts: int
    skipped_contacts: int
    pending_contacts: int
    in_progress_contacts: int
    success_rate: float
    completion_percentage: float


class CampaignBody(_Exact):
    id: int
    name: str
    assistant_id: int
    status: CampaignStatus
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None
    progress: Progress


class CampaignList(_Exact):
    campaigns: list[CampaignBody]


class ContactBody(_Exact):
    id: int
    phone_number: str
    name: str | None
    status: ContactStatus
    call_sid: str | None
    duration: float | None
    error: str | None


class ContactList(_Exact):
    contacts: list[ContactBody]


class ContactPage(_Exact):
    contacts: list[ContactBody]
    next_cursor: str | None


class BotListItem(_Exact):
    """A bot as lists show it: without its URLs."""

    id: str
    status: BotStatus
    meeting_url: str
    bot_name: str
    transcription_model: str
    created_at: Timestamp
    started_at: Timestamp | None
    ended_at: Timestamp | None
    stop_reason: str | None
    error: str | None


class BotBody(BotListItem):
    """A bot; the URLs are those the caller may see (null otherwise, and once it ended)."""

    websocket_url: str | None
    websocket_read_only_url: str | None
    producer_url: str | None


class BotList(_Exact):
    bots: list[BotListItem]


class BotEvent(_Exact):
    """A stored bot event, as the organization event stream's ``meeting`` topic has it."""

    type: str
    bot_id: str
    seq: int = Field(ge=1)
    data: dict[str, Any]


class BotEventPage(_Exact):
    events: list[BotEvent]
    next_cursor: str | None


class TokenBody(_Exact):
    token: str
    token_type: Literal["Bearer"]
    expires_at: Timestamp
    expires_in: int = Field(ge=1)
    scopes: list[Scope]
    call_sid: str | None
    campaign_id: int | None


class SpeechBody(_Exact):
    engine: SpeechEngineName
    twilio_auth_token_set: bool
    deepgram_api_key_set: bool
    require_twilio_signature: bool
    updated_at: Timestamp | None


class Organization(_Exact):
    id: int
    name: str


class OrganizationBody(_Exact):
    id: int
    name: str
    #: The PII kinds redacted at ingest ([]: off).
    redaction: RedactionKinds
    #: Days ended calls are kept (null: forever).
    retention_days: int | None


class SessionBody(_Exact):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    expires_at: Timestamp
    session_expires_at: Timestamp
    read_only: bool
    scopes: list[Scope]
    organization: Organization


class CaptionsBody(_Exact):
    url: str
    token: str
    expires_at: Timestamp


class AlertRuleBody(_Exact):
    """An alert rule; the fields of its kind only (docs/protocol.md, "Alerts")."""

    id: int = Field(ge=1)
    name: str
    kind: Literal["keyword", "regex", "sentiment"]
    keywords: list[str] | None = Field(None, description="keyword")
    pattern: str | None = Field(None, description="regex")
    case_sensitive: bool | None = Field(None, description="regex")
    threshold: float | None = Field(None, description="sentiment")
    window: int | None = Field(None, description="sentiment")
    speaker: Literal["user", "assistant"] | None
    enabled: bool
    created_at: Timestamp
    updated_at: Timestamp


class AlertRuleList(_Exact):
    alert_rules: list[AlertRuleBody]


WebhookEvent = Literal[
    "call.started", "call.ended", "transcript.final", "alert", "campaign.completed", "bot.stopped"
]


class WebhookBody(_Exact):
    """A webhook endpoint (docs/protocol.md, "Webhooks"); never its secret."""

    id: int = Field(ge=1)
    url: str
    events: list[WebhookEvent]
    enabled: bool
    disabled_reason: Literal["failing", "disabled"] | None
    created_at: Timestamp
    updated_at: Timestamp


class WebhookCreated(WebhookBody):
    secret: str = Field(
        pattern=r"^whsec_[A-Za-z0-9+/=]+$", description="The signing secret: shown only here"
    )


class WebhookList(_Exact):
    webhooks: list[WebhookBody]


class WebhookAttempt(_Exact):
    at: Timestamp
    status: int | None = Field(description="The HTTP status (null: no answer)")
    error: str | None
    duration_ms: int = Field(ge=0)


class WebhookDelivery(_Exact):
    id: int = Field(ge=1)
    webhook_id: str = Field(description="The `webhook-id` header it is sent with")
    event_type: WebhookEvent
    seq: int = Field(ge=1)
    state: Literal["pending", "sending", "delivered", "dead"]
    attempts: int = Field(ge=0)
    next_attempt_at: Timestamp | None
    created_at: Timestamp
    delivered_at: Timestamp | None
    log: list[WebhookAttempt]


class WebhookDeliveries(_Exact):
    deliveries: list[WebhookDelivery]
    next_cursor: str | None


class WebhookReplayed(_Exact):
    replayed: int = Field(ge=0)
