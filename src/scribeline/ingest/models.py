"""Validated shapes of ingest requests (PROTOCOL.md section 6).

Unknown fields are refused so that a misspelt field is an error, not a
silently dropped value.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from scribeline.events import CallStatus

__all__ = [
    "CALL_SID_PATTERN",
    "ContactBatch",
    "CreateAssistant",
    "CreateCall",
    "CreateCampaign",
    "NewContact",
    "Outcome",
    "SetStatus",
    "Transcript",
    "TranscriptBatch",
    "UpdateAssistant",
    "valid_call_sid",
]

CALL_SID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
_SID = re.compile(CALL_SID_PATTERN)


def valid_call_sid(sid: str) -> bool:
    """1 to 64 characters of ``[A-Za-z0-9_.:-]``."""
    return _SID.fullmatch(sid) is not None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateCall(_Strict):
    call_sid: str = Field(pattern=CALL_SID_PATTERN)
    assistant_id: int | None = Field(None, ge=1)
    to_phone_number: str | None = Field(None, max_length=32)
    customer_phone_number: str | None = Field(None, max_length=32)
    call_type: Literal["inbound", "outbound", "web"] | None = "inbound"
    status: Literal["queued", "ringing", "in-progress"] = "in-progress"
    #: A contact of a running campaign this call is placed to.
    campaign_contact_id: int | None = Field(None, ge=1)


class Transcript(_Strict):
    content: str = Field(max_length=16_384)
    speaker: Literal["user", "assistant"]
    is_final: bool = True
    confidence: float | None = Field(None, ge=0.0, le=1.0)
    segment_start: float | None = Field(None, ge=0.0)
    segment_end: float | None = Field(None, ge=0.0)
    segment_id: str | None = Field(None, min_length=1, max_length=128)

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


class CreateAssistant(_Strict):
    name: str = Field(min_length=1, max_length=200)
    transcription_enabled: bool = True


class UpdateAssistant(_Strict):
    transcription_enabled: bool


class CreateCampaign(_Strict):
    name: str = Field(min_length=1, max_length=200)
    assistant_id: int | None = Field(None, ge=1)


class NewContact(_Strict):
    phone_number: str = Field(min_length=1, max_length=32)
    name: str | None = Field(None, max_length=200)


ContactBatch: TypeAdapter[list[NewContact]] = TypeAdapter(list[NewContact])


class Outcome(_Strict):
    outcome: Literal["success", "failed", "skipped"]
    duration: float | None = Field(None, ge=0)
    call_sid: str | None = Field(None, pattern=CALL_SID_PATTERN)
    error: str | None = Field(None, max_length=1000)


class SetStatus(_Strict):
    status: CallStatus
    metadata: dict[str, Any] = Field(default_factory=dict)
