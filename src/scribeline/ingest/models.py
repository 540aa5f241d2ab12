"""Validated shapes of ingest requests (PROTOCOL.md section 6).

Unknown fields are refused so that a misspelt field is an error, not a
silently dropped value. Types are strict: ``"yes"`` is not ``true`` and
``"5"`` is not ``5`` (an integer is accepted where a number is expected).
Ids are positive and fit in 64 bits; numbers are finite. Free-form JSON
(a status update's ``metadata``) is bounded in depth and size, so that
everything accepted can also be stored and sent on.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

from scribeline.errors import InvalidMessage
from scribeline.events import CallStatus
from scribeline.numbers import MAX_INT64

__all__ = [
    "CALL_SID_PATTERN",
    "MAX_JSON_DEPTH",
    "MAX_METADATA_BYTES",
    "MAX_REF_BYTES",
    "MAX_REF_DEPTH",
    "NO_NUL",
    "STRICT",
    "ContactBatch",
    "CreateAssistant",
    "CreateCall",
    "CreateCampaign",
    "Id",
    "Metadata",
    "NewContact",
    "Outcome",
    "RedactionKinds",
    "SetStatus",
    "SpeechEngineName",
    "Text",
    "Transcript",
    "TranscriptBatch",
    "UpdateAssistant",
    "UpdateOrganization",
    "bounded_json",
    "parse_ref",
    "valid_call_sid",
]

CALL_SID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
_SID = re.compile(CALL_SID_PATTERN)


def valid_call_sid(sid: str) -> bool:
    """1 to 64 characters of ``[A-Za-z0-9_.:-]``."""
    return _SID.fullmatch(sid) is not None


#: Nesting of objects and arrays allowed in free-form JSON.
MAX_JSON_DEPTH = 16
#: Encoded size allowed for a status update's metadata.
MAX_METADATA_BYTES = 16 * 1024

#: The configuration of every request model.
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

#: A database id: positive, and what a signed 64-bit column holds.
Id = Annotated[int, Field(ge=1, le=MAX_INT64)]

#: Text without NUL, which PostgreSQL's text columns cannot hold: refused (422) on
#: every backend alike, rather than stored by one and an internal error on the other.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, Field(pattern=NO_NUL)]


def bounded_json(value: Any, max_depth: int, max_bytes: int) -> Any:
    """``value`` if its objects and arrays nest at most ``max_depth`` deep and it
    encodes to at most ``max_bytes``; else ``ValueError`` (a 422 or an
    ``invalid_message``)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise ValueError(f"nests more than {max_depth} levels deep")
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError:
        raise ValueError("is not JSON that can be stored") from None
    if size > max_bytes:
        raise ValueError(f"is {size} bytes encoded; at most {max_bytes} are allowed")
    return value


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    return bounded_json(value, MAX_JSON_DEPTH, MAX_METADATA_BYTES)  # type: ignore[no-any-return]


#: A status update's free-form metadata.
Metadata = Annotated[dict[str, Any], AfterValidator(_metadata)]

#: Nesting and encoded size allowed for a producer's ``ref``.
MAX_REF_DEPTH = 4
MAX_REF_BYTES = 256


def parse_ref(value: Any) -> Any:
    """A producer message's ``ref``: any JSON value within the bounds above (a
    string or a number in practice), echoed in its ack or error;
    ``InvalidMessage`` if it is too large or too deep to be echoed."""
    kind = type(value)
    if value is None or kind is bool or kind is float:
        return value
    if (kind is str and len(value) <= _SHORT_REF) or (kind is int and -_I64 <= value < _U64):
        return value  # the usual refs, which cannot be too large
    try:
        return bounded_json(value, MAX_REF_DEPTH, MAX_REF_BYTES)
    except ValueError as exc:
        raise InvalidMessage(f"ref {exc}") from None


#: A string this short encodes within MAX_REF_BYTES even if every character is escaped.
_SHORT_REF = (MAX_REF_BYTES - 2) // 6
_I64, _U64 = 2**63, 2**64  # what orjson encodes


class _Strict(BaseModel):
    model_config = STRICT


class CreateCall(_Strict):
    call_sid: str = Field(pattern=CALL_SID_PATTERN)
    assistant_id: Id | None = None
    to_phone_number: Text | None = Field(None, max_length=32)
    customer_phone_number: Text | None = Field(None, max_length=32)
    call_type: Literal["inbound", "outbound", "web"] | None = "inbound"
    status: Literal["queued", "ringing", "in-progress"] = "in-progress"
    #: A contact of a running campaign this call is placed to.
    campaign_contact_id: Id | None = None


class Transcript(_Strict):
    content: Text = Field(max_length=16_384)
    speaker: Literal["user", "assistant"]
    is_final: bool = True
    confidence: float | None = Field(None, ge=0.0, le=1.0)
    segment_start: float | None = Field(None, ge=0.0)
    segment_end: float | None = Field(None, ge=0.0)
    segment_id: Text | None = Field(None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _ordered(self) -> Transcript:
        if (
            self.segment_start is not None
            and self.segment_end is not None
            and self.segment_end < self.segment_start
        ):
            raise ValueError("segment_end is before segment_start")
        return self


TranscriptBatch: TypeAdapter[list[Transcript]] = TypeAdapter(list[Transcript])


#: Where an assistant's or an organization's live audio is transcribed:
#: ``default`` defers to the organization (for an assistant) or the server.
SpeechEngineName = Literal["default", "local", "deepgram"]


class CreateAssistant(_Strict):
    name: Text = Field(min_length=1, max_length=200)
    transcription_enabled: bool = True
    speech_engine: SpeechEngineName = "default"


def _distinct(kinds: list[str]) -> list[str]:
    if len(set(kinds)) != len(kinds):
        raise ValueError("lists a kind more than once")
    return kinds


#: PII kinds redacted at ingest (``scribeline.redaction.KINDS``), each at most once.
RedactionKinds = Annotated[
    list[Literal["card", "ssn", "email", "phone", "digits"]],
    Field(max_length=5),
    AfterValidator(_distinct),
]


class UpdateAssistant(_Strict):
    transcription_enabled: bool | None = None
    speech_engine: SpeechEngineName | None = None
    #: The assistant's own redaction: a list of kinds ([] is off); null inherits
    #: the organization's. Absent: unchanged.
    redaction: RedactionKinds | None = None

    @model_validator(mode="after")
    def _something(self) -> UpdateAssistant:
        changed = self.transcription_enabled is not None or self.speech_engine is not None
        if not changed and "redaction" not in self.model_fields_set:
            raise ValueError("give transcription_enabled, speech_engine or redaction")
        return self


class UpdateOrganization(_Strict):
    """A change of the organization's settings; absent fields stay."""

    #: The PII kinds redacted at ingest ([] or null: off).
    redaction: RedactionKinds | None = None
    #: Days ended calls are kept (null: forever).
    retention_days: int | None = Field(None, ge=1, le=36_500)

    @model_validator(mode="after")
    def _something(self) -> UpdateOrganization:
        if not self.model_fields_set:
            raise ValueError("give redaction or retention_days")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields given, as the settings service takes them."""
        changes: dict[str, Any] = {}
        if "redaction" in self.model_fields_set:
            changes["redaction"] = self.redaction or []
        if "retention_days" in self.model_fields_set:
            changes["retention_days"] = self.retention_days
        return changes


class CreateCampaign(_Strict):
    name: Text = Field(min_length=1, max_length=200)
    assistant_id: Id | None = None


class NewContact(_Strict):
    phone_number: Text = Field(min_length=1, max_length=32)
    name: Text | None = Field(None, max_length=200)


ContactBatch: TypeAdapter[list[NewContact]] = TypeAdapter(list[NewContact])


class Outcome(_Strict):
    outcome: Literal["success", "failed", "skipped"]
    duration: float | None = Field(None, ge=0)
    call_sid: str | None = Field(None, pattern=CALL_SID_PATTERN)
    error: Text | None = Field(None, max_length=1000)


class SetStatus(_Strict):
    # An enum takes its values from JSON; strict mode would want the enum itself.
    status: CallStatus = Field(strict=False)
    metadata: Metadata = Field(default_factory=dict)
